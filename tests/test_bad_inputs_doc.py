"""docs/bad-inputs.md: every row of its tables names a test that exists (a test file, or a
test function in it), so the table cannot point at nothing."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def resolve(name: str) -> Path:
    """A test file by its path (tests/...) or, as the table abbreviates, its file name."""
    if name.startswith("tests/"):
        return ROOT / name
    [path] = [p for p in (ROOT / "tests").rglob(name)]
    return path


def test_every_row_of_the_bad_input_table_names_an_existing_test():
    rows = [
        ln
        for ln in (ROOT / "docs" / "bad-inputs.md").read_text().splitlines()
        if ln.startswith("| ") and not ln.startswith(("| bad input", "| fault", "| missing"))
    ]
    assert len(rows) >= 40
    previous: list[tuple[Path, str | None]] = []
    for row in rows:
        cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        found: list[tuple[Path, str | None]] = []
        for ref in re.findall(r"`([^`]+\.py(?:::\w+)?|::\w+)`", cell):
            file, _, func = ref.partition("::")
            path = resolve(file) if file else found[-1][0]
            assert path.is_file(), (row, ref)
            found.append((path, func or None))
        if not found and cell.startswith("same test"):
            found = previous
        assert found, f"no test named in: {row}"
        for path, func in found:
            assert func is None or re.search(rf"^def {func}\(", path.read_text(), re.M), (row, path, func)
        previous = found
