-- The service's members onto the contract's customers. There are no demographics: birth_year,
-- gender and region are not returned (they read as null, and what needs them is left out with
-- the reason recorded). Member keys are text and stay text.
SELECT
    member_key AS customer_id,
    joined_on AS signup_date,
    signup_source AS acquisition_channel,
    joined_on AS updated_at
FROM members
WHERE joined_on >= :window_start AND joined_on < :window_end
ORDER BY joined_on
