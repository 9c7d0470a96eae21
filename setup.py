"""Packaging hook (the rest is in pyproject.toml): the JSON Schemas live in the checkout's top-level
`schemas/` (one copy, read by the engine, the tests and editors), and a built wheel carries them as
package data in `engine/schema_files/`, where engine/schemas.py looks first. An editable install reads
the checkout's `schemas/` directly."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class build_py_with_schemas(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "engine" / "schema_files"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((ROOT / "schemas").glob("*.json")):
            self.copy_file(str(source), str(target / source.name))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode),
                *(str(Path(self.build_lib) / "engine" / "schema_files" / s.name)
                  for s in sorted((ROOT / "schemas").glob("*.json")))]


setup(cmdclass={"build_py": build_py_with_schemas})
