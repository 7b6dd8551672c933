-- The tables of the PostgreSQL store itself (not of the FSD's schema): created before the
-- versions are applied, in the same transaction, under the migration lock.

-- one row per schema version applied: the primary key makes a version apply once
CREATE TABLE IF NOT EXISTS flujo_schema (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- one row per writing process, its heartbeat in the server's clock: a `running` run whose writer
-- stopped beating for missed_beats intervals (or stopped writing) reads as crashed from any host
CREATE TABLE IF NOT EXISTS flujo_writers (
    host TEXT COLLATE "C" NOT NULL,
    pid BIGINT NOT NULL,
    pid_start BIGINT NOT NULL,
    -- 0 when the PID namespace is unknown
    pid_ns BIGINT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_beat TIMESTAMPTZ NOT NULL DEFAULT now(),
    beat_interval_ms BIGINT NOT NULL,
    missed_beats BIGINT NOT NULL,
    -- set when the writer closed cleanly: its runs still `running` then did not finish
    stopped_at TIMESTAMPTZ,
    PRIMARY KEY (host, pid, pid_start, pid_ns)
);
