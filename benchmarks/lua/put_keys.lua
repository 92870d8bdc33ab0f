-- PUT a new key on every request, and stop each thread after its quota.
--
-- Arguments (after wrk's "--"): value_bytes total_puts key_prefix threads depth
-- Keys are <prefix><thread>-<n>, so every PUT lands on a key never written
-- before and the store must evict to stay within its bound. Under wrk, n
-- starts at depth+1 in thread 0: before the threads start, wrk calls
-- request() once in that thread's Lua state to count the pipelined requests,
-- and that first batch is never sent (memory_compare.first_key_index). "depth" requests
-- are pipelined per round trip: the loader must outrun the node, and
-- pipelining spares both sides most of the per-request syscalls.

local next_thread = 0

function setup(thread)
  -- Runs in the main Lua state, once per thread, before any request.
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

local body, quota, prefix, depth
local sent, answered = 0, 0

function init(args)
  local size = tonumber(args[1])
  local total = tonumber(args[2])
  local threads = tonumber(args[4])
  depth = tonumber(args[5]) or 1
  body = string.rep("v", size)
  -- Split the total as evenly as possible; the first threads take the remainder.
  quota = math.floor(total / threads)
  if thread_index < total % threads then
    quota = quota + 1
  end
  prefix = "/kv/" .. args[3] .. thread_index .. "-"
end

function request()
  local batch = {}
  for i = 1, depth do
    sent = sent + 1
    batch[i] = wrk.format("PUT", prefix .. sent, nil, body)
  end
  return table.concat(batch)
end

-- wrk's main thread sleeps for the whole -d even after every thread has
-- stopped, so each thread also says it is done; benchmarks/wrk.py sends
-- SIGINT once all have, and wrk then reports at once.
function response(status, headers, body)
  answered = answered + 1
  if answered == quota then
    io.stderr:write("WRK_THREAD_DONE\n")
    io.stderr:flush()
    wrk.thread:stop()
  end
end
