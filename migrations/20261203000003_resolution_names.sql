-- The names of a resolution batch as rows (normalized name, kind, position from 1), for the
-- three passes' statements. It is `unnest(norms, kinds) WITH ORDINALITY` behind a function
-- whose row estimate does not depend on the batch.
--
-- Why: with `unnest` of the parameters written in the statement, PostgreSQL planned each pass
-- afresh for a few names. A custom plan sees the array and estimates its length (1 name),
-- the generic plan 10 names, so for one name the custom plan always looked cheaper and was
-- made anew every time: 0.6-1.3 ms of planning a statement against 0.5-0.9 ms of execution
-- at 100 000 entities (a 2-core machine in a slow state). Here both plans estimate `ROWS 10`,
-- so after its first five executions a connection keeps the generic plan, which has the same
-- nodes and indexes. PL/pgSQL, not SQL: a SQL function would be inlined, and the array seen
-- again.
CREATE FUNCTION resolution_names(norms text[], kinds text[])
    RETURNS TABLE (norm text, kind text, n bigint)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 10
AS $$
BEGIN
    RETURN QUERY SELECT u.norm, u.kind, u.n
                   FROM unnest(norms, kinds) WITH ORDINALITY AS u(norm, kind, n);
END
$$;
