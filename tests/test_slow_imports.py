"""rfc3987_syntax is imported when first used, not with jsonschema
(fractal_jupyter/slow_imports.py), and jsonschema's `iri` format checks answer as before."""

from __future__ import annotations

import json
import subprocess
import sys

CHECKS = (
    "checker = jsonschema.FormatChecker()\n"
    "answers = [checker.conforms(value, form) for value, form in (\n"
    "    ('http://example.org/a b', 'iri'), ('http://example.org/\\u00e4', 'iri'),\n"
    "    ('x y', 'iri-reference'), ('../a?b#c', 'iri-reference'))]\n"
)


def _run(code: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def test_jsonschema_after_the_package_loads_rfc3987_syntax_when_a_check_needs_it() -> None:
    answer = _run(
        "import json, sys, fractal_jupyter, jsonschema\n"
        "loaded_before = '__file__' in vars(sys.modules['rfc3987_syntax'])\n"
        f"{CHECKS}"
        "loaded_after = '__file__' in vars(sys.modules['rfc3987_syntax'])\n"
        "print(json.dumps({'before': loaded_before, 'after': loaded_after, 'answers': answers}))"
    )
    assert answer == {"before": False, "after": True, "answers": [False, True, False, True]}


def test_the_same_answers_without_the_package_and_no_stand_in_once_jsonschema_is_there() -> None:
    answer = _run(
        "import json, sys, jsonschema\n"
        f"{CHECKS}"
        "from fractal_jupyter.slow_imports import defer_rfc3987_syntax\n"
        "real = sys.modules['rfc3987_syntax']\n"
        "defer_rfc3987_syntax()\n"
        "print(json.dumps({'kept': sys.modules['rfc3987_syntax'] is real, 'answers': answers}))"
    )
    assert answer == {"kept": True, "answers": [False, True, False, True]}


def test_threads_that_check_at_once_all_get_the_real_module() -> None:
    answer = _run(
        "import json, sys, threading, fractal_jupyter, jsonschema\n"
        "checker = jsonschema.FormatChecker()\n"
        "answers, go = [], threading.Barrier(8)\n"
        "def check():\n"
        "    go.wait()\n"
        "    answers.append(checker.conforms('http://example.org/a b', 'iri'))\n"
        "threads = [threading.Thread(target=check) for _ in range(8)]\n"
        "for thread in threads: thread.start()\n"
        "for thread in threads: thread.join()\n"
        "module = sys.modules['rfc3987_syntax']\n"
        "print(json.dumps({'answers': answers, 'real': '__file__' in vars(module)}))"
    )
    assert answer == {"answers": [False] * 8, "real": True}
