"""Benchmarks of the cache, run with ``python -m benchmarks`` (see README.md here).

Every speed figure is a ratio against a baseline measured in the same run,
because the machines this runs on are shared and noisy: one absolute number
means little, a ratio of interleaved medians means something.

Modules, one job each:

- ``__main__``     the command line: sets up, runs, writes the report
- ``machine``      what we run on (CPU, versions) and which cores to pin to
- ``processes``    starting, pinning and always stopping child processes
- ``bare_server``  the baseline: a bare aiohttp handler in its own process
- ``loadgen``      the load generator interface, and picking wrk or Python
- ``wrk``          wrk (Debian package) with a Lua hook that reports JSON
- ``pyload``       the fallback: several Python processes of raw keep-alive HTTP
- ``scenarios``    what is measured: a list of ``Scenario`` values
- ``runner``       interleaved rounds of every scenario
- ``report``       medians, ratios, the table, the JSON and Markdown files
- ``memory``       RSS of a node written ten times past its byte bound
"""
