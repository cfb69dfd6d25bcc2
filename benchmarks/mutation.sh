#!/usr/bin/env bash
# Mutation testing of one module at a time with mutmut (pip install -e .[dev]); a development
# routine, not part of CI. Usage:
#
#   benchmarks/mutation.sh MODULE_FILE TEST_FILE... [-- MUTANT_GLOB]
#   benchmarks/mutation.sh minigan/nn/norm.py tests/nn/test_double_backward.py tests/nn/test_layers.py
#   benchmarks/mutation.sh minigan/penalty/r1.py tests/losses/test_penalty.py -- 'minigan.penalty.r1.x_r1*'
#
# It copies the tracked tree to a scratch folder (mutmut writes mutants/ and a cache there),
# narrows [tool.mutmut] to MODULE_FILE and the given tests, runs `mutmut run` niced under a
# time limit (MUTATION_TIMEOUT seconds, default 1800) and prints `mutmut results` (survivors,
# timeouts). Judge every survivor: an equivalent mutant (say why) or a gap (write the test).
# MUTATION_CHILDREN (default 1): mutmut's parallel children; one keeps a shared machine usable.
# MUTATION_NICE (default 19). Hypothesis runs the "mutation" profile (tests/conftest.py: the
# default examples, no shrinking: a failing mutant is killed at once instead of timing out).
# NUMBA_DISABLE_JIT=1 (exported by the caller) for kernels/*.py: see docs/testing.md.
# Results go to benchmarks/results/mutation-<date>.md by hand.
set -euo pipefail
module="$1"; shift
tests=(); glob=""
while [[ $# -gt 0 ]]; do
  if [[ "$1" == "--" ]]; then glob="${2:-}"; break; fi
  tests+=("$1"); shift
done
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${MUTATION_WORKDIR:-$(mktemp -d /tmp/minigan-mutation.XXXXXX)}"
(cd "$root" && git ls-files | tar cf - -T -) | (cd "$work" && tar xf -)
python - "$work/pyproject.toml" "$module" "${tests[@]}" <<'PY'
import json, re, sys
path, module, tests = sys.argv[1], sys.argv[2], sys.argv[3:]
s = open(path).read()
s = re.sub(r'only_mutate = \[.*?\]', 'only_mutate = ' + json.dumps([module]), s, flags=re.S)
s = re.sub(r'pytest_add_cli_args_test_selection = \[.*?\]',
           'pytest_add_cli_args_test_selection = ' + json.dumps(tests), s, flags=re.S)
open(path, 'w').write(s)
PY
cd "$work"
export MINIGAN_HYPOTHESIS_PROFILE="${MINIGAN_HYPOTHESIS_PROFILE:-mutation}"   # no shrinking (tests/conftest.py)
echo "mutation run of $module in $work (tests: ${tests[*]})"
nice -n "${MUTATION_NICE:-19}" timeout "${MUTATION_TIMEOUT:-1800}" \
  mutmut run --max-children "${MUTATION_CHILDREN:-1}" ${glob:+"$glob"} || echo "(stopped: time limit or error, exit $?)"
mutmut results
