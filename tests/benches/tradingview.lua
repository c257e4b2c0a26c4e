-- wrk script: a distinct TradingView alert per request (so none is a
-- duplicate), alternating buy and sell so the paper position stays small.
-- Used by the webhook benchmark in BENCHMARKS.md.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  counter = 0
  -- Distinct across runs too, so a rerun against the same store is not
  -- answered as duplicates.
  run = os.time()
end

function request()
  counter = counter + 1
  local side = (counter % 2 == 0) and "sell" or "buy"
  local body = string.format(
    '{"passphrase":"bench-pass","ticker":"AAPL","time":"t%d-%d-%d","strategy":{"order_action":"%s","order_contracts":"1","order_id":"bench"}}',
    run, id, counter, side)
  return wrk.format("POST", "/webhooks/tradingview/bench", {["content-type"] = "application/json"}, body)
end

-- With DELAY_MS set, each connection waits that long between requests, so
-- the rate is about connections × 1000 / DELAY_MS per second.
local pause = tonumber(os.getenv("DELAY_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end
