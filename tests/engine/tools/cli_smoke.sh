#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `pixtral` end to end on a tiny fixture model: --json output is one ASCII line whose prompt and greedy tokens equal
# the transformers reference; errors give the documented exit codes. Usage: cli_smoke.sh PIXTRAL FIXTURES_DIR
set -u
PIXTRAL=$1 FIX=$2
case_dir=$FIX/models/tiny-bf16/cases/b_image
fail=0
out=$("$PIXTRAL" generate --model "$FIX/models/tiny-bf16/native" --messages "$case_dir/messages.json" \
      --temperature 0 --max-tokens 32 --device cpu --json 2>/dev/null)
rc=$?
[ $rc -eq 0 ] || { echo "generate exit $rc"; fail=1; }
python3 - "$case_dir/case.json" "$out" <<'PY' || fail=1
import json, sys
ref = json.load(open(sys.argv[1]))
line = sys.argv[2]
assert line.count("\n") == 0 and line.isascii(), "stdout must be one ASCII line"
r = json.loads(line)
assert r["prompt_tokens"] == ref["prompt_tokens"], "prompt tokens differ from the reference"
assert r["tokens"] == ref["greedy_tokens"], "greedy tokens differ from the reference"
assert r["finish_reason"] == "length", r["finish_reason"]
for k in ("load_ms", "prefill_ms", "ttft_ms", "decode_ms_per_token"):
    assert k in r["timings"], k
print("generate --json: prompt and 32 greedy tokens equal the reference")
PY
expect() {  # expect CODE ARGS...
  local want=$1; shift
  "$PIXTRAL" "$@" > /dev/null 2>&1; local got=$?
  if [ $got -ne $want ]; then echo "pixtral $*: exit $got, expected $want"; fail=1; fi
}
expect 2 generate --model "$FIX/models/tiny-bf16/native"
expect 2 generate --model x --prompt hi --temperature -1
expect 2 generate --model x --messages m.json --prompt hi
expect 3 generate --model /nonexistent --prompt hi --device cpu
expect 3 generate --model "$FIX/models/tiny-bf16/native" --messages /nonexistent.json
expect 2 frobnicate
ids=$("$PIXTRAL" tokenize --model "$FIX/models/tiny-bf16/native" --text "[INST] hello")
text=$("$PIXTRAL" tokenize --model "$FIX/models/tiny-bf16/native" --decode $ids)
[ "$text" = "[INST] hello" ] || { echo "tokenize/decode round trip gave '$text'"; fail=1; }
case " $ids " in *" 3 "*) echo "special token produced from text: $ids"; fail=1 ;; esac
exit $fail
