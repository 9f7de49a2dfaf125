"""A local emulator of Azure Data Lake Storage Gen2 (the dfs endpoint plus the Blob-API calls the
DataLake SDK makes), for development and tests. Never imported by the deployed app.

Run: ``python -m devtools.adls_emulator --host 127.0.0.1 --port 10100 [--data-dir DIR]`` (see
docs/adls-emulator.md for all options and the limits), or in a
test: ``devtools.adls_emulator.server.start_in_thread()``. Account URL for the SDK:
``http://HOST:PORT/devstoreaccount1`` (well-known dev account and key, see ``auth.py``).

Operation names (used by ``/_emulator/stats`` and by fault rules' ``op``):

=========================== =====================================================================
``create_filesystem``        PUT ``/{fs}?restype=container`` or ``?resource=filesystem``
``delete_filesystem``        DELETE ``/{fs}?restype=container`` or ``?resource=filesystem``
``get_filesystem_properties`` GET/HEAD ``/{fs}?restype=container``, HEAD ``?resource=filesystem``
``set_filesystem_metadata``  PUT ``?restype=container&comp=metadata``, PATCH ``?resource=filesystem``
``filesystem_lease``         PUT ``/{fs}?restype=container&comp=lease``
``list_filesystems``         GET ``/?comp=list`` or ``/?resource=account``
``list_paths``               GET ``/{fs}?resource=filesystem``
``create_file``              PUT ``/{fs}/{path}?resource=file``
``create_directory``         PUT ``/{fs}/{path}?resource=directory``
``rename``                   PUT ``/{fs}/{path}`` with ``x-ms-rename-source``
``append``                   PATCH ``?action=append`` (also with ``flush=true``)
``flush``                    PATCH ``?action=flush``
``get_properties``           HEAD ``/{fs}/{path}`` (also ``?action=getStatus|getAccessControl``)
``read``                     GET ``/{fs}/{path}``
``delete``                   DELETE ``/{fs}/{path}``
``lease``                    PUT ``/{fs}/{path}?comp=lease`` or POST with ``x-ms-lease-action``
``set_metadata``             PUT ``?comp=metadata`` or PATCH ``?action=setProperties``
``set_properties``           PUT ``?comp=properties`` (HTTP headers)
``set_access_control``       PATCH ``?action=setAccessControl`` (owner, group, permissions, ACL)
``set_access_control_recursive`` PATCH ``?action=setAccessControlRecursive`` (set / modify / remove)
``get_user_delegation_key``  POST ``/?restype=service&comp=userdelegationkey`` (bearer only)
``get_service_properties``   GET ``/?restype=service&comp=properties``
``set_service_properties``   PUT ``/?restype=service&comp=properties``
``set_expiry``               PUT ``/{fs}/{path}?comp=expiry``
``query``                    POST ``/{fs}/{path}?comp=query`` (quick query, CSV / JSON lines)
``list_deleted_paths``       GET ``/{fs}?restype=container&comp=list&showonly=deleted``
``undelete_path``            PUT ``/{fs}/{path}?comp=undelete`` with ``x-ms-undelete-source``
``undelete_filesystem``      PUT ``/{fs}?restype=container&comp=undelete``
``set_tags`` / ``get_tags``  PUT / GET ``/{fs}/{path}?comp=tags`` (blob index tags)
``unknown``                  anything else (answered 501 ``NotImplemented``)
=========================== =====================================================================

A request using a header, query parameter or value an operation does not implement answers 501
``NotImplemented`` naming the feature (see ``features.py``): nothing is silently ignored. POSIX
ACLs are applied to bearer tokens and user delegation SAS with ``suoid`` (see ``authz.py``).

Control API (no authentication), same port: ``GET /_emulator/health``, ``GET|POST|DELETE
/_emulator/faults``, ``GET /_emulator/stats``, ``POST /_emulator/stats/reset``; see
``faults.py`` and ``control.py``.
"""
