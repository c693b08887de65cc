-- wrk script: POST Match requests as JSON. Set by the environment:
--   IDS_FILE   a file of demand ids, one per line (queries pick one at random per request)
--   DISTINCT   how many of them to use (small = cache hits after warm-up; large = mostly misses)
-- Prints one machine-readable line at the end: "RESULT requests=N rps=X p50_ms=Y p99_ms=Z errors=E".
local ids = {}
local distinct = tonumber(os.getenv("DISTINCT") or "100")

function init(args)
  for line in io.lines(os.getenv("IDS_FILE")) do
    ids[#ids + 1] = line
    if #ids >= distinct then break end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local id = ids[math.random(#ids)]
  local body = '{"record":{"side":"SIDE_DEMAND","id":"' .. id .. '"},"k":10}'
  return wrk.format("POST", "/twirp/dovetail.v1.Matchmaker/Match", nil, body)
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
