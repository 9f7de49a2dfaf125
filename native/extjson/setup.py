"""The encoder's C speed-up (``_bronze_extjson``), built by pip from requirements.txt.

``optional=True``: where no C compiler is found the install goes on without it, and
``shared.encode`` writes the same lines through its pure-Python paths.
"""

from setuptools import Extension, setup

setup(
    name="bronze-extjson",
    version="1.0.0",
    description="BSON change event -> Extended JSON line, for mongo-adls-bronze",
    ext_modules=[Extension("_bronze_extjson", ["_bronze_extjson.c"], optional=True,
                           extra_compile_args=["-O2"])],
    zip_safe=False,
)
