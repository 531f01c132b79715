-- wrk script of bench/run.sh: METHOD and TARGET from the environment; with
-- COOKIES (a file of `name=value` lines), requests go round-robin over them.
local method = os.getenv("METHOD") or "GET"
local target = os.getenv("TARGET") or "/"
local cookies = {}
local file = os.getenv("COOKIES")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then cookies[#cookies + 1] = line end
  end
end
local prepared = {}
local n = 0

function init(args)
  if #cookies == 0 then
    prepared[1] = wrk.format(method, target, { ["Content-Length"] = "0" })
  else
    for i, c in ipairs(cookies) do
      prepared[i] = wrk.format(method, target, { ["Cookie"] = c, ["Content-Length"] = "0" })
    end
  end
end

function request()
  n = n % #prepared + 1
  return prepared[n]
end
