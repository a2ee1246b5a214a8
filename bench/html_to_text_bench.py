"""html_to_text on hostile mail bodies (issue 9, finding 2): prints the time per body; asserts nothing.

    python bench/html_to_text_bench.py [--sizes-mb 1 10]

The old regex version was quadratic on an unclosed <script>/<style>/<head> (1 MB took about 8 minutes); the
target is under 1 s for a 10 MB body of any shape. Each figure is the best of 3 runs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest  # noqa: E402,F401  (keeps demistomock from treating this script as a command-line run)

import MicrosoftGraphMail as mgm  # noqa: E402

TARGET_SECONDS_10MB = 1.0


def repeat_to(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Each shape defeats a naive parser differently: unclosed raw-text elements, tags without '>', many '<',
# unclosed and bogus comments, huge attributes, long whitespace runs, and a realistic phishing page.
SHAPES: dict[str, Callable[[int], str]] = {
    'unclosed <script': lambda n: '<script>' + 'a' * (n - 8),
    'many unclosed <head>': lambda n: repeat_to('<head>x', n),
    'many <style> blocks': lambda n: repeat_to('<style>p{}</style>text ', n),
    "'<' without '>'": lambda n: '<' * n,
    "'<s' without '>'": lambda n: repeat_to('<s', n),
    'unclosed comments': lambda n: repeat_to('<!--', n),
    'bogus comments': lambda n: repeat_to('<!x><?y>', n),
    'tags only': lambda n: repeat_to('<a>', n),
    'whitespace runs': lambda n: '\n' + ' ' * (n - 2) + 'x',
    'phishing page': lambda n: repeat_to('<div><p>Your mailbox is full. <a href="https://evil.example/login">'
                                        'Verify</a>&nbsp;now</p><br></div>\n', n),
}


def best_of(runs: int, body: str) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        mgm.html_to_text(body)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes-mb', type=float, nargs='+', default=[1, 10])
    options = parser.parse_args()
    print(f"{'body shape':<24}" + ''.join(f'{f"{s:g} MB":>12}' for s in options.sizes_mb))
    worst_10mb = 0.0
    for name, build in SHAPES.items():
        cells = []
        for size_mb in options.sizes_mb:
            seconds = best_of(3, build(int(size_mb * 1_000_000)))
            if size_mb == 10:
                worst_10mb = max(worst_10mb, seconds)
            cells.append(f'{seconds:>10.3f} s')
        print(f'{name:<24}' + ''.join(cells))
    if 10 in options.sizes_mb:
        verdict = 'pass' if worst_10mb < TARGET_SECONDS_10MB else 'MISS'
        print(f'slowest 10 MB body: {worst_10mb:.3f} s (target < {TARGET_SECONDS_10MB:g} s): {verdict}')


if __name__ == '__main__':
    main()
