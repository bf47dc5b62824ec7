-- Anonymous -> known pairs for `[merges] preset = "sql"` (events mapping): one row per pair, or per
-- identify (repeats of a pair are folded). Columns: anonymous_id, user_id, and identified_at (when the pair
-- was first seen: of several users on one device, the first or last identified is merged, per
-- shared_anonymous_id). Bound :params only. This one reads a Segment/RudderStack identifies table.
SELECT anonymous_id, user_id, min("timestamp") AS identified_at
FROM segment.identifies
WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
GROUP BY anonymous_id, user_id
