"""The demo's policy sets and the policy tests of its sound one (`sop demo`, docs/examples/).

Written in the canonical layout (`sop policy fmt --check` passes on them);
docs/examples/demo-policies/ holds the same text as files, which a test
keeps identical to these.
"""

from __future__ import annotations

__all__ = ["SOUND_POLICIES", "SOUND_POLICY_TESTS", "UNSOUND_POLICIES"]

SOUND_POLICIES = """\
# The demo's sound policy set: each protocol persists only inside its own scope.

[roles]
compiler = ["drac"]
reader = ["csp", "drac", "emp"]
state-keeper = ["csp"]
verifier = ["emp"]

# DRAC persists its compiled artifacts, up to 1 MiB each.
[[policy]]
id = "drac-persist-artifacts"
effect = "permit"
principal = ["role:compiler"]
action = ["artifact.persist"]
resource = ["artifacts/drac/**"]
channel = "bridge"
when = 'context.size_bytes <= 1048576'

[[policy]]
id = "drac-phases"
effect = "permit"
principal = ["role:compiler"]
action = ["phase.advance"]
resource = ["artifacts/drac/sessions/**"]
channel = "bridge"

[[policy]]
id = "emp-record-verdicts"
effect = "permit"
principal = ["role:verifier"]
action = ["obligation.submit", "verdict.record"]
resource = ["verdicts/emp/**"]
channel = "bridge"

# CSP keeps working and episodic state only.
[[policy]]
id = "csp-state"
effect = "permit"
principal = ["role:state-keeper"]
action = ["snapshot.resume", "snapshot.seal", "state.persist"]
resource = ["snapshots/csp/**", "state/csp/**"]
channel = "bridge"
when = 'has context.state_class && context.state_class in ["episodic", "working"]'

[[policy]]
id = "readers-read-artifacts"
effect = "permit"
principal = ["role:reader"]
action = ["artifact.read"]
resource = ["artifacts/**"]
channel = "bridge"

# Forbids override permits.
[[policy]]
id = "forbid-secrets-outside-csp"
effect = "forbid"
principal = "*"
action = "*"
resource = ["artifacts/**", "verdicts/**"]
channel = "*"
when = 'has context.classification && context.classification == "secret"'

[[policy]]
id = "forbid-during-emergency"
effect = "forbid"
principal = "*"
action = ["artifact.persist", "snapshot.seal", "state.persist"]
resource = "*"
channel = "*"
when = 'has context.emergency && context.emergency'
"""

UNSOUND_POLICIES = """\
# Refused: a permit lets DRAC persist anywhere, outside the approved scopes.

[[policy]]
id = "drac-persist-anywhere"
effect = "permit"
principal = ["drac"]
action = ["artifact.persist"]
resource = "*"
channel = "bridge"
"""

SOUND_POLICY_TESTS = """\
# Policy tests of the demo's sound policy set: `sop policy test` runs them (docs/CLI.md).
# Each case is a request's fields and what the policy stage must answer; capabilities
# and proof obligations are not part of a policy test.

[defaults]
principal = "drac"
action = "artifact.persist"

[[case]]
name = "DRAC persists a small artifact"
resource = "artifacts/drac/session-7/plan.json"
context = { size_bytes = 4096, phase = "ASSEMBLE" }
expect = { effect = "ALLOW", policies = ["drac-persist-artifacts"], reason = "permitted" }

[[case]]
name = "a secret artifact: the forbid overrides the permit"
resource = "artifacts/drac/session-7/key.bin"
context = { size_bytes = 10, classification = "secret" }
expect = { effect = "DENY", policies = ["forbid-secrets-outside-csp"], reason = "forbidden" }

[[case]]
name = "an oversized artifact: no permit matches"
resource = "artifacts/drac/a/big.bin"
context = { size_bytes = 50_000_000 }
expect = { effect = "DENY", policies = [], reason = "no_permit" }

[[case]]
name = "no size given: the size condition cannot be evaluated, and any error denies"
resource = "artifacts/drac/a/plan.json"
expect = { effect = "DENY", policies = ["drac-persist-artifacts"], reason = "evaluation_error" }

[[case]]
name = "DRAC outside its own scope"
resource = "artifacts/emp/x.json"
context = { size_bytes = 10 }
expect = { effect = "DENY", reason = "no_permit" }

[[case]]
name = "nothing is persisted during an emergency"
resource = "artifacts/drac/session-7/plan.json"
context = { size_bytes = 10, emergency = true }
expect = { effect = "DENY", policies = ["forbid-during-emergency"], reason = "forbidden" }

[[case]]
name = "DRAC advances a session phase"
action = "phase.advance"
resource = "artifacts/drac/sessions/s-1/phases/ASSEMBLE/complete"
expect = { effect = "ALLOW", policies = ["drac-phases"] }

[[case]]
name = "EMP records a verdict"
principal = "emp"
action = "verdict.record"
resource = "verdicts/emp/run-9/v1.json"
expect = "ALLOW"

[[case]]
name = "CSP persists working state"
principal = "csp"
action = "state.persist"
resource = "state/csp/agent-1/wm.bin"
context = { state_class = "working" }
expect = { effect = "ALLOW", policies = ["csp-state"] }

[[case]]
name = "CSP state of another class: no permit"
principal = "csp"
action = "state.persist"
resource = "state/csp/agent-1/x.bin"
context = { state_class = "semantic" }
expect = { effect = "DENY", reason = "no_permit" }

[[case]]
name = "every protocol reads artifacts"
principal = "csp"
action = "artifact.read"
resource = "artifacts/drac/session-7/plan.json"
expect = { effect = "ALLOW", policies = ["readers-read-artifacts"] }

[[case]]
name = "a reader that is no protocol"
principal = "ops"
action = "artifact.read"
resource = "artifacts/drac/session-7/plan.json"
expect = "DENY"
"""
