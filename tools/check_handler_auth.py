"""Fails (exit 1) if any HTTP method of a server handler lacks authentication or authorization.

Every ``get/post/put/patch/delete/head/options`` method of a class in
``jupyter_hub_ctl/server/`` must carry both ``@web.authenticated`` and ``@authorized``.
"""

from __future__ import annotations

import ast
import pathlib
import sys

METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def decorator_names(node) -> set:
    names = set()
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        names.add(ast.unparse(target))
    return names


def check(root: pathlib.Path) -> list:
    problems = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for fn in cls.body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in METHODS:
                    names = decorator_names(fn)
                    missing = [d for d in ("web.authenticated", "authorized") if d not in names]
                    if missing:
                        problems.append(f"{path}:{fn.lineno} {cls.name}.{fn.name} lacks {', '.join(missing)}")
    return problems


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent / "jupyter_hub_ctl" / "server"
    problems = check(root)
    for p in problems:
        print(p)
    print(f"handler auth check: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
