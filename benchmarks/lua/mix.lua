-- Replay a workload written by benchmarks/workload.py (write_files).
--
-- benchmarks/wrk.py puts one line before this script, mix_dir = "<dir>",
-- naming a directory with:
--   threads     a line per wrk thread: "host port stream offset"
--   stream-<i>  a line per request: "METHOD PATH BODY" (BODY: index or -1)
--   body-<j>    the raw bytes of body j
-- Thread t connects to its stream's host:port (thread.addr) and sends the
-- stream's requests in order from its own offset, cycling; all connections
-- of a thread share its cursor (wrk does not tell request() which
-- connection asks). There is deliberately no response() callback: with one,
-- wrk parses every answer in Lua. Non-2xx answers are still counted, as
-- wrk's status errors.

-- The main state: hand each thread its address and stream.
local plan, planned = nil, 0

local function read_plan()
  local threads = {}
  for line in io.lines(mix_dir .. "/threads") do
    local host, port, stream, offset = line:match("^(%S+) (%S+) (%S+) (%d+)$")
    assert(host, "bad line in the thread plan: " .. line)
    threads[#threads + 1] = { host = host, port = port, stream = stream, offset = offset }
  end
  return threads
end

function setup(thread)
  plan = plan or read_plan()
  planned = planned + 1
  local entry = assert(plan[planned], "wrk started more threads than the plan has")
  thread.addr = wrk.lookup(entry.host, entry.port)[1]
  thread:set("mix_stream", entry.stream)
  thread:set("mix_offset", tonumber(entry.offset))
  thread:set("mix_host", entry.host .. ":" .. entry.port)
end

-- A thread's state: its stream as parallel arrays, 1-based.
local heads, bodies = {}, {}
local count, cursor = 0, 0

local function read_file(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

-- For a GET, the same bytes as wrk.format("GET", path, {Host = host}).
-- Bodies are appended on use, so a 100 KB value is held once, not once
-- per request.
local function head(method, path, body)
  local length = body and ("Content-Length: " .. #body .. "\r\n") or ""
  return method .. " " .. path .. " HTTP/1.1\r\nHost: " .. mix_host .. "\r\n" .. length .. "\r\n"
end

function init(args)
  local loaded, formatted = {}, {}
  for line in io.lines(mix_dir .. "/stream-" .. mix_stream) do
    local method, path, index = line:match("^(%u+) (%S+) (%-?%d+)$")
    assert(method, "bad line in a stream: " .. line)
    local body = false
    index = tonumber(index)
    if index >= 0 then
      loaded[index] = loaded[index] or read_file(mix_dir .. "/body-" .. index)
      body = loaded[index]
    end
    -- One head string per distinct request, formatted once.
    local name = line
    formatted[name] = formatted[name] or head(method, path, body or nil)
    count = count + 1
    heads[count] = formatted[name]
    bodies[count] = body
  end
  assert(count > 0, "empty stream " .. mix_stream)
  cursor = mix_offset % count
end

function request()
  cursor = cursor + 1
  if cursor > count then
    cursor = 1
  end
  local body = bodies[cursor]
  if body then
    return heads[cursor] .. body
  end
  return heads[cursor]
end
