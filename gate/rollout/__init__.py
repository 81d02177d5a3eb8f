"""`inferwatch rollout`: a canary rollout through the collector's gateway, step by step (run.py).

    start   -> check both pools are behind the gateway and no other split holds the baseline
    shift   -> send `weight` of the baseline's traffic to the candidate (a split with a lease, renewed while
               the rollout runs: if this process dies, the split lapses and traffic is on the baseline again;
               lease.py)
    load    -> a load burst addressed to the baseline, which the split divides
    canary  -> the candidate probed against the baseline (canary and eval requests are never split)
    eval    -> an eval suite on both pools, item by item
    judge   -> the gate over the rollout's span (gate/judge.py); latency and cost from the eval requests,
               which both pools got alike (plan.py MEASURED_ALIKE)
    promote -> pass: every request for the baseline goes to the candidate (a split of weight 1, no lease)
    abort   -> fail, no data, marginal (unless promote_marginal), any error or an interrupt: the split is
               cleared

Every step is logged and stored in the `rollouts` table with what it did or why it failed (steps.py).
"""
