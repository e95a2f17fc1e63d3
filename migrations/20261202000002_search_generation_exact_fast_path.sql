-- The default, exact mode (max_staleness 0) bumps the generation with the plain UPDATE of
-- 20261130000001 again. The bounded-staleness body of 20261202000001 ran for every write:
-- it made `crud.update_entity` 1.63x slower, [1.11, 2.39] with 98 % confidence, in
-- `pgperf ab --base 27c5a00~1` (104 to 155 µs), and the single-run guard (fail at 1.6x) let
-- it through at x1.52.
--
-- In exact mode the first UPDATE moves the generation and nothing else (`moved_at` and
-- `pending` are read only in bounded mode; a pending move left from bounded mode stays
-- pending, and readers take it as made, so every write still changes what they see). In
-- bounded mode that UPDATE matches no row and the bounded body runs, as before.
CREATE OR REPLACE FUNCTION bump_search_generation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz;
BEGIN
    UPDATE search_generation SET generation = generation + 1 WHERE max_staleness = '0 s';
    IF FOUND THEN
        RETURN NULL;
    END IF;
    t := clock_timestamp();
    UPDATE search_generation SET (generation, moved_at, pending) = (
        SELECT CASE WHEN t - m >= max_staleness THEN g + 1 ELSE g END,
               CASE WHEN t - m >= max_staleness THEN t ELSE m END,
               t - m < max_staleness
          FROM (SELECT CASE WHEN pending AND t - moved_at >= max_staleness
                            THEN generation + 1 ELSE generation END AS g,
                       CASE WHEN pending AND t - moved_at >= max_staleness
                            THEN moved_at + max_staleness ELSE moved_at END AS m) AS seen);
    RETURN NULL;
END
$$;
