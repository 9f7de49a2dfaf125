"""SDK tests that fail against the emulator, each with the reason (also in docs/adls-emulator.md).

Keys are ``fnmatch`` patterns over pytest node ids relative to the package's ``tests/`` folder
(``test_file.py::TestFile::test_name``, parameters included). The plugin marks them ``xfail``
(not strict: one that starts passing shows as XPASS in the summary, and should be removed here).
"""

KNOWN_FAILURES: dict[str, str] = {
}
