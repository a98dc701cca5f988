#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pixtral bench --precision` on the CPU smoke path (--device cpu --tiny: a tiny synthetic model whose dims are
# multiples of 128): every precision runs; auto resolves to bf16 on the CPU; the plan is reported; the decode floor
# counts the bytes read per token in the loaded format (int4 < int8 < bf16) and the figure's floor is computed from
# them; int8/int4 report KL divergence and top-1 agreement against bf16 (int4 further from bf16 than int8); a bad
# precision is exit 2; a folder written by --write-model loads with --model; PIXTRAL_BENCH_ROWS=T times layer 0's
# GEMMs and stops (T = 0: exit 2). Usage: bench_smoke.sh PIXTRAL
set -u
PIXTRAL=$1
fail=0
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for p in auto bf16 int8 int4; do
  extra=""
  [ "$p" = int8 ] || [ "$p" = int4 ] && extra="--accuracy 4"
  if ! "$PIXTRAL" bench --device cpu --tiny --quick --json --precision $p $extra > "$dir/$p.json" 2> "$dir/$p.err"; then
    echo "bench --precision $p failed:"; cat "$dir/$p.err"; fail=1
  fi
done
python3 - "$dir" <<'PY' || fail=1
import json, math, sys
d = sys.argv[1]
r = {p: json.load(open(f"{d}/{p}.json")) for p in ("auto", "bf16", "int8", "int4")}
assert r["auto"]["precision"] == "bf16", "auto on the CPU must be bf16, got " + r["auto"]["precision"]
assert r["auto"]["precision_requested"] == "auto"
for p in ("bf16", "int8", "int4"):
    j = r[p]
    assert j["precision"] == p, (p, j["precision"])
    plan = j["plan"]
    assert plan["precision"] == p and plan["fits"] and plan["max_context"] > 0, plan
    parts = ("weight_bytes", "kv_bytes", "scratch_bytes", "vision_activation_bytes", "reserve_bytes")
    assert plan["total_bytes"] == sum(plan[k] for k in parts), plan
    c = j["counts"]
    fig = {f["figure"]: f for f in j["figures"]}
    bw = j["ceilings"]["copy_bytes_per_s"]
    ctx = j["prompt_tokens"] + 128 / 2
    floor = (c["decode_weight_bytes"] + c["kv_bytes_per_token"] * ctx) / bw * 1e3
    assert math.isclose(fig["decode"]["floor"], floor, rel_tol=1e-9), (p, fig["decode"]["floor"], floor)
    assert fig["decode"]["value"] > 0
w = {p: r[p]["counts"]["decode_weight_bytes"] for p in ("bf16", "int8", "int4")}
assert w["bf16"] == r["bf16"]["counts"]["decode_weight_bytes_bf16"], "bf16 reads the bf16 byte count"
assert w["int4"] < w["int8"] < w["bf16"], w
lin = {p: r[p]["plan"]["linear_bytes"] for p in ("bf16", "int8", "int4")}
assert 0.5 < lin["int8"] / lin["bf16"] < 0.55 and lin["int4"] < lin["int8"], lin  # + fp32 scales per row
a8, a4 = r["int8"]["accuracy_vs_bf16"], r["int4"]["accuracy_vs_bf16"]
for a in (a8, a4):
    assert a["prompts"] == 4 and 0 <= a["top1_agreement"] <= 1, a
    assert math.isfinite(a["mean_kl"]) and a["mean_kl"] > 0, a
assert a4["mean_kl"] > a8["mean_kl"], (a8, a4)
assert "accuracy_vs_bf16" not in r["bf16"]
print("bench --precision: auto/bf16/int8/int4 ran; plans, byte floors and accuracy consistent")
PY
# --write-model: the tiny synthetic weights as a real folder, then loaded with --model (quantized on load, no
# cache file) at an explicit --context: the plan printed is for that context.
if "$PIXTRAL" bench --tiny --write-model "$dir/model" > "$dir/write.out" 2>&1 &&
   "$PIXTRAL" bench --device cpu --model "$dir/model" --quick --json --precision int8 --quant-cache off \
     --context 512 > "$dir/loaded.json" 2> "$dir/loaded.err"; then
  python3 - "$dir" <<'PY' || fail=1
import json, os, sys
d = sys.argv[1]
files = sorted(os.listdir(f"{d}/model"))
assert files == ["consolidated.safetensors", "params.json", "tekken.json"], files  # no cache file written
j = json.load(open(f"{d}/loaded.json"))
assert j["model"] == f"{d}/model" and j["precision"] == "int8", (j["model"], j["precision"])
assert j["plan"]["context"] == 512, j["plan"]
fig = {f["figure"]: f for f in j["figures"]}
assert fig["decode"]["value"] > 0 and fig["weight_upload"]["value"] > 0, fig
print("bench --write-model / --model: the written folder loads, quantized on load, planned at --context")
PY
else
  echo "bench --write-model / --model failed:"; cat "$dir/write.out" "$dir/loaded.err" 2>/dev/null; fail=1
fi
# PIXTRAL_BENCH_ROWS=T: layer 0's seven GEMMs timed on T rows, one line each and the layer's, then the bench stops.
if PIXTRAL_BENCH_ROWS=9 "$PIXTRAL" bench --device cpu --tiny --quick --precision int4 > "$dir/rows.out" 2>&1; then
  n=$(grep -cE '^rows_gemm (wq|wk|wv|wo|w1|w3|w2) T=9 N=[0-9]+ K=[0-9]+ [0-9.]+ ms [0-9]+ GB/s$' "$dir/rows.out")
  if [ "$n" -ne 7 ] || ! grep -qE '^rows_gemm_layer [0-9.]+ ms' "$dir/rows.out" || grep -q '^decode ' "$dir/rows.out"; then
    echo "PIXTRAL_BENCH_ROWS=9: expected 7 GEMM lines and the layer's, and no page-QA figures:"; cat "$dir/rows.out"
    fail=1
  fi
else
  echo "PIXTRAL_BENCH_ROWS=9 failed:"; cat "$dir/rows.out"; fail=1
fi
PIXTRAL_BENCH_ROWS=0 "$PIXTRAL" bench --device cpu --tiny --quick > /dev/null 2>&1
[ $? -eq 2 ] || { echo "PIXTRAL_BENCH_ROWS=0: expected exit 2"; fail=1; }
"$PIXTRAL" bench --device cpu --tiny --quick --precision fp8 > /dev/null 2>&1
[ $? -eq 2 ] || { echo "bench --precision fp8: expected exit 2"; fail=1; }
exit $fail
