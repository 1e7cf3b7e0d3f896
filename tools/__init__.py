"""The tools around the agent, not the agent: the test receiver (`eventsink-agent receive`), the
conference simulator and the demo (`eventsink-agent demo`). They may use the agent's packages;
none of those uses them (the agent's CLI only runs the two commands, importing them on demand)."""
