"""The Ops_Event_Bus: SOP's operations events, a projection of the signed log.

Nothing here decides and nothing here is a source of truth: every event is
derived from a log entry already durable in the log and carries its index, so
the bus can never say something the log does not (DESIGN.md section 8).
"""
