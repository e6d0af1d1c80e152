-- Every membership period (a purchase or a renewal) onto the contract's subscriptions: the
-- plan code and the payment method id as the service writes them, the price turned into a
-- price per month (a free trial is 0), the expiry as end_date, auto_renew as given (0/1).
SELECT
    txn_ref AS subscription_id,
    member_key AS customer_id,
    plan_code AS plan,
    round(price * 30.0 / plan_days, 2) AS monthly_fee,
    pay_method AS payment_method,
    started_at AS start_date,
    expires_at AS end_date,
    auto_renew
FROM memberships
WHERE started_at >= :window_start AND started_at < :window_end
ORDER BY started_at
