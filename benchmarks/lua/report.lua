-- Appended to every wrk script the benchmarks run: at the end, print one
-- line of JSON that benchmarks/wrk.py reads, so that no figure depends on
-- parsing wrk's human-readable units ("1.23ms", "45.6k").
-- Latencies are in microseconds, the duration too (wrk's own units).
-- "percentiles_us" holds the names of loadgen.PERCENTILES.

local report_percentiles = { "1", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99" }

function done(summary, latency, requests)
  local e = summary.errors
  local percentiles = {}
  for i, name in ipairs(report_percentiles) do
    percentiles[i] = string.format('"%s":%d', name, latency:percentile(tonumber(name)))
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p99_9":%d},' ..
    '"percentiles_us":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    table.concat(percentiles, ",")))
end
