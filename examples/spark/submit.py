"""spark-submit entry point of customer-value (the wheel must be installed on the driver and the
executors): computes every table on the cluster and publishes them like the CLI.

    spark-submit --master yarn examples/spark/submit.py --config config.toml --as-of 2024-12-31

Exit codes as the CLI's: 2 bad configuration, 3 the data failed its checks, 1 anything else.
"""

from customer_value.spark import main

raise SystemExit(main())
