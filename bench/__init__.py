"""drdeck's benchmarks: measurements against a baseline taken in the same run.

`python -m bench` runs every benchmark and prints one table; `--only NAME`
runs one, `--json` prints the results for a machine. A benchmark never fails
the build: a missed target is printed as MISSED and the exit code stays 0.

Adding one is one module and one registry line:

- write `bench/NAME.py` with a `run() -> Report` function; measure the subject
  and its baseline in the same process, interleaved (see `common.interleaved`),
  and return `Row`s (plus `Note`s for anything that is not a number);
- add `"NAME": "bench.NAME"` to `BENCHMARKS` in `bench/__main__.py`.
"""
