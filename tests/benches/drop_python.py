"""A large plugin dropped into a running host's plugins folder: how long
until its first bar, cold and from the compile cache, and what the SMA
already running beside it sees meanwhile.

    python3 tests/benches/drop_python.py target/release/stratbox \
        target/python/guests/sma_crossover_py-*.wasm

(The Python build appears there once `cargo test` has run the Python
tests.)"""
import json, os, shutil, subprocess, sys, tempfile, time, urllib.request, re
B, PY = sys.argv[1], sys.argv[2]
d = tempfile.mkdtemp()
shutil.rmtree(d, ignore_errors=True); os.makedirs(d + "/plugins")
open(d + "/c.toml", "w").write(f'''[server]
listen = "127.0.0.1:0"

[feed]
kind = "replay"
data = "bundled:AAPL"
symbol = "AAPL"
pace_ms = 5

[runtime]
watch_ms = 25
compile_cache = "{d}/compiled"

[plugins]
dir = "{d}/plugins"

[[strategy]]
name = "calm"
plugin = "sma-crossover"
''')
out = open(d + "/out.txt", "w")
p = subprocess.Popen([B, "run", "--config", d + "/c.toml"], stdout=out, stderr=subprocess.STDOUT)
addr = None
for _ in range(400):
    m = re.search(r"listening on (http://\S+)", open(d + "/out.txt").read())
    if m: addr = m.group(1); break
    time.sleep(0.05)
def health():
    return json.load(urllib.request.urlopen(addr + "/health"))
def inst(h, n):
    return next((s for s in h["strategies"] if s["name"] == n), None)
while inst(health(), "calm")["bars"] < 100: time.sleep(0.05)
base = inst(health(), "calm")["latency"]
print("calm before:", base)
def drop(name):
    shutil.copy(PY, f"{d}/plugins/.{name}.tmp")
    t0 = time.time()
    os.rename(f"{d}/plugins/.{name}.tmp", f"{d}/plugins/{name}.wasm")
    worst = 0; p99s = []
    while True:
        h = health()
        c = inst(h, "calm")["latency"]; worst = max(worst, c["max_us"]); p99s.append(c["p99_us"])
        s = inst(h, name)
        if s and s["bars"] > 0: break
        time.sleep(0.005)
    return time.time() - t0, worst, max(p99s)
cold = drop("py")
print("cold: first bar after %.2f s; calm max %d us, worst p99 %d us while compiling" % cold)
cached = drop("py2")
print("cached: first bar after %.2f s; calm max %d us, worst p99 %d us" % cached)
print("calm after:", inst(health(), "calm")["latency"])
p.kill()
