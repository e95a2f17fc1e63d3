-- resolution_names is estimated at one row, not ten. At 1M entities, with the estimate of 10
-- names, a single resolution's generic plan took 23 ms at the median and 212 ms at p95
-- (`pgperf scale --sizes 1m`), against 1.6 ms and 3.6 ms for the custom plans before: an
-- estimate ten times too large chose other joins than for one name. One row is what the
-- custom plans of a single name assumed, and every pass is a nested loop over the names
-- whatever their number.
ALTER FUNCTION resolution_names(text[], text[]) ROWS 1;
