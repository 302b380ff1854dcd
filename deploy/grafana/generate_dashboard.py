#!/usr/bin/env python3
"""Generates dashboards/allocwatch.json (the Grafana dashboard over allocwatch's measurements).
Edit here, then: python3 deploy/grafana/generate_dashboard.py > deploy/grafana/dashboards/allocwatch.json
tests/deploy.rs checks every query against the measurements and fields allocwatch writes."""
import json
DS = {"type": "influxdb", "uid": "allocwatch-influxdb"}
RANGE = 'from(bucket: v.defaultBucket)\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n'
SEL = '  |> filter(fn: (r) => r.centre =~ /^${centre:regex}$/)\n  |> filter(fn: (r) => not exists r.committee or r.committee =~ /^${committee:regex}$/)\n'
def alloc(fields):
    cond = " or ".join(f'r._field == "{f}"' for f in fields)
    return RANGE + f'  |> filter(fn: (r) => r._measurement == "allocation" and ({cond}))\n' + SEL
STATUS = [("on_track", "On track", 0, "green"), ("over_pace", "Over pace", 1, "orange"), ("under_pace", "Under pace", 2, "purple"),
          ("exhausted", "Exhausted", 3, "red"), ("not_started", "Not started", 4, "text"), ("ended", "Ended", 5, "#424a53")]
status_map = [{"type": "value", "options": {str(code): {"text": label, "color": color, "index": code}}} for (_, label, code, color) in STATUS]
panels = []
pid = [0]
def nid():
    pid[0] += 1
    return pid[0]
def row(title, y):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
def panel(kind, title, query, x, y, w, h, **extra):
    p = {"type": kind, "title": title, "id": nid(), "datasource": DS, "gridPos": {"h": h, "w": w, "x": x, "y": y},
         "targets": [{"refId": "A", "datasource": DS, "query": query}]}
    p.update(extra)
    panels.append(p)
    return p

row("Overview by status and centre", 0)
for i, (key, label, code, color) in enumerate(STATUS):
    q = alloc(["status_code"]) + f'  |> last()\n  |> filter(fn: (r) => r._value == {code})\n  |> group()\n  |> count()\n'
    panel("stat", label, q, 4 * i, 1, 4, 4, description=f"Allocations whose status at the last cycle is {key} (status_code {code}).",
          fieldConfig={"defaults": {"color": {"mode": "fixed", "fixedColor": color}, "unit": "none", "noValue": "0"}, "overrides": []},
          options={"colorMode": "background", "graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "textMode": "value"})
status_expr = " else ".join(f'if r._value == {code} then "{key}"' for (key, _, code, _) in STATUS) + ' else "unknown"'
q = (alloc(["status_code"]) + '  |> last()\n'
     f'  |> map(fn: (r) => ({{r with status: {status_expr}}}))\n'
     '  |> group(columns: ["centre", "status"])\n  |> count()\n  |> group()\n'
     '  |> pivot(rowKey: ["centre"], columnKey: ["status"], valueColumn: "_value")\n')
panel("barchart", "Allocations by centre and status", q, 0, 5, 8, 10,
      description="Count of allocations per centre, stacked by status at the last cycle.",
      options={"stacking": "normal", "xField": "centre", "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "orientation": "horizontal"},
      fieldConfig={"defaults": {"unit": "none"}, "overrides": [
          {"matcher": {"id": "byName", "options": key}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}, {"id": "displayName", "value": label}]}
          for (key, label, _, color) in STATUS]})
fields = ["granted_hours", "consumed_hours", "expected_hours", "consumed_pct", "drift_pp", "burn_rate_hours_per_day", "projected_exhaustion_days", "projected_unused_hours", "status_code"]
q = (alloc(fields) + '  |> last()\n'
     '  |> pivot(rowKey: ["centre", "project", "resource", "period_start"], columnKey: ["_field"], valueColumn: "_value")\n'
     '  |> group()\n  |> sort(columns: ["drift_pp"], desc: true)\n')
panel("table", "Allocations at the last cycle", q, 8, 5, 16, 10,
      description="One row per allocation (centre, project, resource, period): the `allocation` measurement's last point.",
      fieldConfig={"defaults": {"unit": "none", "decimals": 1}, "overrides": [
          {"matcher": {"id": "byName", "options": "status_code"}, "properties": [{"id": "displayName", "value": "status"}, {"id": "mappings", "value": status_map}, {"id": "custom.cellOptions", "value": {"type": "color-background"}}]},
          {"matcher": {"id": "byName", "options": "consumed_pct"}, "properties": [{"id": "unit", "value": "percent"}, {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "lcd"}}, {"id": "max", "value": 100}]},
          {"matcher": {"id": "byName", "options": "drift_pp"}, "properties": [{"id": "displayName", "value": "drift (pp)"}]},
          {"matcher": {"id": "byRegexp", "options": ".*_hours.*"}, "properties": [{"id": "decimals", "value": 0}]},
      ]},
      options={"showHeader": True, "cellHeight": "sm"})
panel("timeseries", "Drift from the expected pace (pp of the grant)", alloc(["drift_pp"]) + '  |> keep(columns: ["_time", "_value", "centre", "project", "resource"])\n', 0, 15, 12, 9,
      fieldConfig={"defaults": {"unit": "none", "custom": {"drawStyle": "line", "lineWidth": 1, "showPoints": "never"},
                                "thresholds": {"mode": "absolute", "steps": [{"color": "purple", "value": None}, {"color": "green", "value": -20}, {"color": "orange", "value": 10}]}}, "overrides": []},
      options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]}, "tooltip": {"mode": "multi"}})
panel("timeseries", "Consumed, % of the grant", alloc(["consumed_pct"]) + '  |> keep(columns: ["_time", "_value", "centre", "project", "resource"])\n', 12, 15, 12, 9,
      fieldConfig={"defaults": {"unit": "percent", "custom": {"drawStyle": "line", "lineWidth": 1, "showPoints": "never"}}, "overrides": []},
      options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]}, "tooltip": {"mode": "multi"}})

row("Burn-down of ${project}", 24)
q = (RANGE + '  |> filter(fn: (r) => r._measurement == "allocation" and r.project == "${project}")\n'
     '  |> filter(fn: (r) => r._field == "consumed_hours" or r._field == "expected_hours" or r._field == "granted_hours")\n'
     '  |> keep(columns: ["_time", "_value", "_field", "resource", "period_start"])\n')
panel("timeseries", "Consumed vs expected vs granted: ${project}", q, 0, 25, 16, 10,
      description="The project's allocations over time: hours consumed, hours the profile expects by then, hours granted (with top-ups and withdrawals).",
      fieldConfig={"defaults": {"unit": "h", "custom": {"drawStyle": "line", "lineWidth": 2, "showPoints": "never"}}, "overrides": [
          {"matcher": {"id": "byRegexp", "options": ".*consumed_hours.*"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}}, {"id": "custom.fillOpacity", "value": 12}]},
          {"matcher": {"id": "byRegexp", "options": ".*expected_hours.*"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "text"}}, {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]},
          {"matcher": {"id": "byRegexp", "options": ".*granted_hours.*"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "orange"}}, {"id": "custom.lineInterpolation", "value": "stepAfter"}]}]},
      options={"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}})
for i, (field, title, unit) in enumerate([("burn_rate_hours_per_day", "Burn rate", "h/day"), ("projected_exhaustion_days", "Runs out in", "d"), ("projected_unused_hours", "Projected unused", "h")]):
    q = RANGE + f'  |> filter(fn: (r) => r._measurement == "allocation" and r.project == "${{project}}" and r._field == "{field}")\n  |> last()\n'
    panel("stat", title, q, 16 + (i % 2) * 4 if i < 2 else 16, 25 + (0 if i < 2 else 5), 4 if i < 2 else 8, 5,
          fieldConfig={"defaults": {"unit": "none" if unit == "h/day" else unit, "decimals": 0, "noValue": "-"}, "overrides": []},
          options={"colorMode": "none", "graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "textMode": "value_and_name"})

row("Feed health", 35)
def feed(fields):
    cond = " or ".join(f'r._field == "{f}"' for f in fields)
    return RANGE + f'  |> filter(fn: (r) => r._measurement == "centre_feed" and ({cond}))\n  |> filter(fn: (r) => r.centre =~ /^${{centre:regex}}$/)\n'
panel("timeseries", "Age of the freshest data (s since the last successful pull)", feed(["seconds_since_last_success"]) + '  |> keep(columns: ["_time", "_value", "centre", "source"])\n', 0, 36, 12, 8,
      fieldConfig={"defaults": {"unit": "s", "custom": {"drawStyle": "line", "showPoints": "never", "thresholdsStyle": {"mode": "line"}},
                                "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}, {"color": "red", "value": 21600}]}}, "overrides": []},
      description="The stale_feed alert fires past 6 h (21,600 s) by default.")
panel("timeseries", "Pulls and failures per cycle", feed(["pulls", "pull_failures"]) + '  |> keep(columns: ["_time", "_value", "_field", "centre", "source"])\n', 12, 36, 12, 8,
      fieldConfig={"defaults": {"unit": "none", "custom": {"drawStyle": "bars", "fillOpacity": 60}}, "overrides": [
          {"matcher": {"id": "byRegexp", "options": ".*pull_failures.*"}, "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}]})
panel("timeseries", "Records ingested and lines rejected per cycle", feed(["records_ingested", "rejected_lines"]) + '  |> keep(columns: ["_time", "_value", "_field", "centre", "source"])\n', 0, 44, 12, 8,
      fieldConfig={"defaults": {"unit": "none", "custom": {"drawStyle": "bars", "fillOpacity": 60}}, "overrides": []})
panel("timeseries", "Time spent pulling per cycle", feed(["pull_duration_seconds"]) + '  |> keep(columns: ["_time", "_value", "centre", "source"])\n', 12, 44, 12, 8,
      fieldConfig={"defaults": {"unit": "s", "custom": {"drawStyle": "line", "showPoints": "auto"}}, "overrides": []})
q = (RANGE + '  |> filter(fn: (r) => r._measurement == "orphan_usage" and r._field == "hours")\n'
     '  |> filter(fn: (r) => r.centre =~ /^${centre:regex}$/)\n  |> last()\n'
     '  |> keep(columns: ["centre", "account", "partition", "resource", "_value"])\n  |> group()\n  |> sort(columns: ["_value"], desc: true)\n')
panel("table", "Usage no allocation covers (last cycle, trailing window)", q, 0, 52, 24, 8,
      description="Orphan accounts (a mapped partition, no active allocation) and unmapped partitions (no resource: core-hours).",
      fieldConfig={"defaults": {"unit": "h", "decimals": 0}, "overrides": [{"matcher": {"id": "byName", "options": "_value"}, "properties": [{"id": "displayName", "value": "hours"}]}]})

def tagvar(name, label, tag, predicate, multi=True):
    v = {"name": name, "label": label, "type": "query", "datasource": DS, "refresh": 2, "sort": 1,
         "query": f'import "influxdata/influxdb/schema"\nschema.tagValues(bucket: v.defaultBucket, tag: "{tag}", predicate: (r) => {predicate}, start: -400d)',
         "definition": "", "multi": multi, "includeAll": multi, "current": {}, "options": [], "hide": 0}
    if multi:
        v["allValue"] = ".*"
    return v
dashboard = {
    "uid": "allocwatch-overview",
    "title": "allocwatch",
    "description": "Compute-hour allocations reconciled by allocwatch: status by centre, per-project burn-down, feed health. Measurements: README.md, Indicators.",
    "tags": ["allocwatch", "hpc", "allocations"],
    "timezone": "utc",
    "editable": False,
    "graphTooltip": 1,
    "schemaVersion": 39,
    "version": 1,
    "refresh": "5m",
    "time": {"from": "now-90d", "to": "now"},
    "templating": {"list": [
        tagvar("centre", "Centre", "centre", 'r._measurement == "allocation"'),
        tagvar("committee", "Committee", "committee", 'r._measurement == "allocation"'),
        tagvar("project", "Project", "project", 'r._measurement == "allocation" and r.centre =~ /^${centre:regex}$/', multi=False),
    ]},
    "annotations": {"list": []},
    "panels": panels,
}
print(json.dumps(dashboard, indent=2))
