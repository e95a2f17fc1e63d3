-- Resolution's first pass finds candidates by shared words. A word that a large share of the
-- names have (an address's "street", a state's code) brings thousands of candidates, each
-- scored, and tells none of them apart: on FEBRL 2 (4 000 people with their addresses) the
-- word pass of a batch of 1 000 names took 33 s, and 0.7 s without the words of more than
-- 0.2 % of the names (a 2-core machine in a slow state).
--
-- `frequent_words` holds those words, from the statistics ANALYZE keeps on the word indexes
-- (pg_stats.most_common_elems: at most 10 x the statistics target per index, so the table
-- stays small). Resolution leaves them out of a name's words, unless a name has no other
-- word. `refresh_frequent_words()` re-reads the statistics; run it after ANALYZE of a large
-- change (`pgperf_db::ingest::analyze_entities` does both). Reading pg_stats in every
-- resolution instead cost 3-5 ms a statement. Word variants are not filtered: a variant
-- many words share (one letter deleted) is what links a misspelled word to its original.
CREATE TABLE frequent_words (
    word  text PRIMARY KEY CHECK (length(word) BETWEEN 1 AND 500),
    share real NOT NULL CHECK (share > 0 AND share <= 1)
);

-- Words found in more than `min_share` of the names or of the aliases, and in at least
-- `min_names` of them (in a small table every word has a large share, and none costs much);
-- returns how many. 0.2 %: measured on FEBRL 1-4 and the generated set, F1 did not move at
-- 1 %, 0.5 % or 0.2 %, and the time per name fell with the share.
CREATE FUNCTION refresh_frequent_words(min_share real DEFAULT 0.002, min_names real DEFAULT 10)
    RETURNS bigint
    LANGUAGE sql
AS $$
    DELETE FROM frequent_words;
    INSERT INTO frequent_words (word, share)
    SELECT u.word, least(max(u.share), 1)
      FROM pg_stats s
      JOIN pg_class ic ON ic.relname = s.tablename
                      AND ic.relnamespace = s.schemaname::regnamespace
      JOIN pg_index i ON i.indexrelid = ic.oid
      JOIN pg_class t ON t.oid = i.indrelid,
           unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS u(word, share)
     WHERE s.schemaname = current_schema()
       AND s.tablename IN ('entities_normalized_name_words_idx',
                           'entity_aliases_normalized_alias_words_idx')
       AND u.word IS NOT NULL AND u.share > min_share
       AND u.share * t.reltuples >= min_names
     GROUP BY u.word
    -- Two refreshes at once: the later one's DELETE did not see the earlier one's rows.
    ON CONFLICT (word) DO UPDATE SET share = excluded.share;
    SELECT count(*) FROM frequent_words;
$$;
