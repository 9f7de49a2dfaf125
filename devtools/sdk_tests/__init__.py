"""The Azure SDK's own ``azure-storage-file-datalake`` tests, run live against the ADLS emulator.

``python -m devtools.sdk_tests`` (``make test-sdk``) downloads the source package of the pinned SDK
version from PyPI (once, into ``.local/sdk-tests/``), starts the emulator over HTTPS with a
self-signed certificate, and runs the package's ``tests/`` folder unchanged with pytest, using the
minimal ``devtools_testutils`` stand-in in ``shim/`` and the plugin in ``plugin.py`` (async tests,
markers, the known failures listed in ``known_failures.py`` and a pass-rate summary).
"""
