"""The documentation: the manual in docs/ builds with MkDocs in strict mode (a broken link or anchor
fails it), and README.md stays a short front page whose relative links resolve. No Ray needed."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
MAX_README_LINES = 250
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_manual_builds_in_strict_mode(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", "mkdocs.yml",
         "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_readme_is_a_short_front_page_whose_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    for command in ("make run", "make test", "make test-fast"):
        assert command in text, command
    relative = [link for link in LINK.findall(text) if not link.startswith(("http://", "https://", "#"))]
    assert relative, "README.md links to no docs page"
    missing = [link for link in relative if not (REPO / link.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
