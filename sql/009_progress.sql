-- FlowScale schema, part 9: a running run's progress, for the nginx fronts
-- that do not have the run (GET L/runs/ID and the event stream read it
-- here).  The front that follows the run writes it at most once a second.
ALTER TABLE flowscale.runs ADD COLUMN IF NOT EXISTS progress jsonb;
