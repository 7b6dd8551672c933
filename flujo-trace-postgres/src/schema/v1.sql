-- Schema version 1: the DDL of FSD-08 section 5.2 (as SQLite's v1.sql), in PostgreSQL's types.
-- Ids and times sort byte-wise (COLLATE "C"), so prefix ranges and time ranges use the btree
-- indexes whatever the database's collation.
CREATE TABLE runs (
    run_id TEXT COLLATE "C" PRIMARY KEY,
    pipeline_name TEXT COLLATE "C" NOT NULL,
    pipeline_version TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    start_time TEXT COLLATE "C" NOT NULL,
    end_time TEXT COLLATE "C",
    total_cost DOUBLE PRECISION,
    final_context_blob TEXT
);
CREATE INDEX idx_runs_status ON runs(status);
CREATE INDEX idx_runs_pipeline_name ON runs(pipeline_name);

CREATE TABLE steps (
    -- the order rows were inserted in, as SQLite's rowid: a step is inserted when it starts,
    -- so this is execution order
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    step_run_id TEXT COLLATE "C" PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step_name TEXT NOT NULL,
    step_index BIGINT NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    start_time TEXT COLLATE "C" NOT NULL,
    end_time TEXT COLLATE "C",
    duration_ms BIGINT,
    cost DOUBLE PRECISION,
    tokens BIGINT,
    input_blob TEXT,
    output_blob TEXT,
    error_blob TEXT
);
-- SQLite's idx_steps_run_id holds (run_id, rowid); here the same as (run_id, seq)
CREATE INDEX idx_steps_run_id ON steps(run_id, seq);
