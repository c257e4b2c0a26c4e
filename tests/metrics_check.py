"""Parses an OpenMetrics scrape with the Prometheus project's own Python
parser (strict: the exposition must end in `# EOF`, types must match
their samples) and prints its samples as JSON, for tests/metrics.rs.

    python3 metrics_check.py SCRAPE.txt
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

samples = []
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for sample in family.samples:
        samples.append({"family": family.name, "type": family.type, "name": sample.name,
                        "labels": sample.labels, "value": sample.value})
print(json.dumps(samples))
