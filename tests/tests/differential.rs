//! A randomized differential harness: seeded cases of schema, data, staging rows and
//! config, each run by backfill_ext and by the reference, `INSERT INTO … SELECT … FROM
//! staging ON CONFLICT …` into a plain table with the same unique indexes. The two must
//! end with the same rows (as multisets), staging must be left as the config says, and
//! no chunk that was compressed may be left partial or decompressed, and a continuous
//! aggregate must equal a fresh `GROUP BY` of the destination. Where staging holds
//! several rows for one key under UPDATE (the reference alone would fail: a row cannot
//! be affected twice), the last row in staging's order wins; the reference drops the
//! earlier ones first, by the unique index's own equality. Where the reference fails
//! (a violated constraint), the run must fail too, and every row it took from staging
//! must be in the destination.
//!
//! A failing case prints its seed and an SQL script that reproduces it. A fixed set of
//! seeds runs by default; `BACKFILL_DIFF_CASES` (cases per test) and `BACKFILL_DIFF_SEED`
//! (the first seed) run more, for a soak. Run where a full TimescaleDB is installed
//! (ignored, with the reason, elsewhere).

use backfill_ext_client_tests::timescale_cluster;
use backfill_ext_client_tests::timescale_test;
use backfill_ext_client_tests::Client;

/// splitmix64: a small, seeded, portable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Nothing,
    Update,
    Restrict,
}

/// One generated case.
#[derive(Debug)]
struct Case {
    seed: u64,
    schema: String,
    time_type: &'static str,
    dev_type: &'static str,
    dev_nullable: bool,
    /// The destination's collation of `tag`, and staging's.
    tag_collation: &'static str,
    staging_tag_collation: &'static str,
    /// Key columns of the unique index (empty: none), primary key or not.
    key: Vec<&'static str>,
    primary: bool,
    nulls_not_distinct: bool,
    second_unique: bool,
    partial_unique: bool,
    segmentby: Vec<&'static str>,
    orderby_desc: bool,
    dropped_column: bool,
    partial_chunk: bool,
    uncompressed_chunk: bool,
    action: Action,
    update_columns: Vec<&'static str>,
    explicit_target: bool,
    delete_from_staging: bool,
    workers: u64,
    always_route: bool,
    rewrite_on_disk: bool,
    strategy: &'static str,
    staging_order: Vec<&'static str>,
    /// A continuous aggregate on the destination (daily count and sum per device).
    cagg: bool,
}

const COLUMNS: [&str; 5] = ["time", "dev", "tag", "v", "w"];

impl Case {
    fn new(seed: u64, icu: bool) -> Case {
        let mut r = Rng(seed);
        let time_type = r.pick(&["timestamptz", "timestamptz", "timestamp", "date", "bigint"]);
        let dev_type = r.pick(&["int", "int", "bigint", "text", "numeric", "uuid"]);
        let dev_nullable = r.chance(50);
        let mut collations = vec!["default", "\"C\""];
        if icu {
            collations.push("backfill_ci");
        }
        let tag_collation = r.pick(&collations);
        let staging_tag_collation =
            if r.chance(30) { r.pick(&["default", "\"C\"", "\"POSIX\""]) } else { tag_collation };
        let key: Vec<&str> = match r.below(4) {
            0 => vec![],
            1 => vec!["dev", "time"],
            _ => vec!["dev", "tag", "time"],
        };
        let primary = !key.is_empty() && !dev_nullable && !key.contains(&"tag") && r.chance(50);
        let nulls_not_distinct = !key.is_empty() && !primary && r.chance(25);
        let second_unique = !key.is_empty() && r.chance(15);
        let partial_unique = r.chance(10);
        let deterministic_tag = tag_collation != "backfill_ci";
        let segmentby = match r.below(4) {
            0 => vec![],
            1 if deterministic_tag => vec!["dev", "tag"],
            _ => vec!["dev"],
        };
        let mut action =
            r.pick(&[Action::Nothing, Action::Update, Action::Update, Action::Restrict]);
        if key.is_empty() {
            action = Action::Nothing;
        }
        let update_columns =
            if action == Action::Update && r.chance(30) { vec!["v"] } else { vec![] };
        let explicit_target =
            !key.is_empty() && (second_unique && action != Action::Nothing || r.chance(30));
        let delete_from_staging = key.is_empty() || r.chance(85);
        let mut staging_order = COLUMNS.to_vec();
        if r.chance(30) {
            staging_order.reverse();
        }
        Case {
            seed,
            schema: format!("case_{seed}"),
            time_type,
            dev_type,
            dev_nullable,
            tag_collation,
            staging_tag_collation,
            key,
            primary,
            nulls_not_distinct,
            second_unique,
            partial_unique,
            segmentby,
            orderby_desc: r.chance(30),
            dropped_column: r.chance(20),
            partial_chunk: r.chance(30),
            uncompressed_chunk: r.chance(30),
            action,
            update_columns,
            explicit_target,
            delete_from_staging,
            workers: r.pick(&[1, 2]),
            always_route: r.chance(30),
            rewrite_on_disk: r.chance(30),
            strategy: r.pick(&["auto", "auto", "auto", "direct", "decompress"]),
            staging_order,
            cagg: time_type == "timestamptz" && r.chance(30),
        }
    }

    /// A value of the time column: `day` days and `minute` minutes after the start.
    fn time(&self, day: u64, minute: u64) -> String {
        match self.time_type {
            "bigint" => (day * 86400 + minute * 60).to_string(),
            "date" => format!("(date '2024-01-01' + {day})"),
            t => format!(
                "({t} '2024-01-01 00:00:00+00' + interval '{day} days {minute} minutes')::{t}"
            ),
        }
    }

    /// Device `slot` (4: NULL where the column may be NULL).
    fn dev(&self, slot: u64) -> String {
        if slot == 4 && self.dev_nullable {
            return "NULL".into();
        }
        match self.dev_type {
            "text" => format!("'d{slot}'"),
            "numeric" => format!("{slot}.5"),
            "uuid" => format!("'00000000-0000-0000-0000-00000000000{slot}'"),
            _ => slot.to_string(),
        }
    }

    fn collate(c: &str) -> String {
        if c == "default" {
            String::new()
        } else {
            format!(" COLLATE {c}")
        }
    }

    fn column_type(&self, c: &str, tag_collation: &str) -> String {
        match c {
            "time" => format!("{} NOT NULL", self.time_type),
            "dev" => {
                format!("{}{}", self.dev_type, if self.dev_nullable { "" } else { " NOT NULL" })
            }
            "tag" => format!("text{}", Case::collate(tag_collation)),
            "v" => "int".into(),
            _ => "text".into(),
        }
    }

    /// The statements that make the destination, its reference twin and staging.
    fn setup(&self, rows: &[String], staged: &[String]) -> Vec<String> {
        let s = &self.schema;
        let cols: Vec<String> = COLUMNS
            .iter()
            .map(|c| format!("{c} {}", self.column_type(c, self.tag_collation)))
            .collect();
        let mut out = vec![
            format!("CREATE SCHEMA {s}"),
            format!(
                "CREATE TABLE {s}.m ({}{})",
                cols.join(", "),
                if self.dropped_column { ", junk int" } else { "" }
            ),
        ];
        if self.dropped_column {
            out.push(format!("ALTER TABLE {s}.m DROP COLUMN junk"));
        }
        if !self.key.is_empty() {
            let nnd = if self.nulls_not_distinct { " NULLS NOT DISTINCT" } else { "" };
            let kind =
                if self.primary { "PRIMARY KEY".to_string() } else { format!("UNIQUE{nnd}") };
            out.push(format!(
                "ALTER TABLE {s}.m ADD CONSTRAINT m_key {kind} ({})",
                self.key.join(", ")
            ));
        }
        if self.second_unique {
            out.push(format!("ALTER TABLE {s}.m ADD CONSTRAINT m_w UNIQUE (w, time)"));
        }
        if self.partial_unique {
            out.push(format!("CREATE UNIQUE INDEX m_partial ON {s}.m (v, time) WHERE v >= 990"));
        }
        // the reference: a plain table with the same columns and unique indexes
        out.push(format!("CREATE TABLE {s}.ref_m (LIKE {s}.m INCLUDING INDEXES)"));
        let interval = if self.time_type == "bigint" {
            "86400".to_string()
        } else {
            "interval '1 day'".to_string()
        };
        out.push(format!(
            "SELECT create_hypertable('{s}.m', 'time', chunk_time_interval => {interval})"
        ));
        if self.time_type == "bigint" {
            out.push(format!(
                "CREATE FUNCTION {s}.now_int() RETURNS bigint LANGUAGE sql STABLE AS \
                'SELECT 0::bigint'"
            ));
            out.push(format!("SELECT set_integer_now_func('{s}.m', '{s}.now_int')"));
        }
        let order = if self.orderby_desc { "time DESC" } else { "time" };
        out.push(format!(
            "ALTER TABLE {s}.m SET (timescaledb.compress, timescaledb.compress_segmentby = '{}', \
             timescaledb.compress_orderby = '{order}')",
            self.segmentby.join(", ")
        ));
        out.push(format!("INSERT INTO {s}.m (time, dev, tag, v, w) VALUES {}", rows.join(", ")));
        out.push(format!("INSERT INTO {s}.ref_m SELECT * FROM {s}.m"));
        if self.cagg {
            out.push(format!(
                "CREATE MATERIALIZED VIEW {s}.m_daily WITH (timescaledb.continuous) AS \
                 SELECT time_bucket('1 day', time) AS b, dev, count(*) AS n, sum(v) AS sv FROM \
                 {s}.m GROUP BY 1, 2 WITH DATA"
            ));
        }
        let compressed = if self.uncompressed_chunk {
            "c.range_start_integer IS DISTINCT FROM 259200 AND c.range_start IS DISTINCT FROM \
             '2024-01-04 00:00:00+00'"
        } else {
            "true"
        };
        out.push(format!(
            "SELECT compress_chunk(format('%I.%I', c.chunk_schema, c.chunk_name)) FROM \
             timescaledb_information.chunks c \
             WHERE c.hypertable_schema = '{s}' AND c.hypertable_name = 'm' AND {compressed}"
        ));
        if self.partial_chunk {
            let extra = format!("({}, {}, NULL, 7, 'wx')", self.time(1, 7), self.dev(7));
            out.push(format!("INSERT INTO {s}.m (time, dev, tag, v, w) VALUES {extra}"));
            out.push(format!("INSERT INTO {s}.ref_m (time, dev, tag, v, w) VALUES {extra}"));
        }
        let scols: Vec<String> = self
            .staging_order
            .iter()
            .map(|c| format!("{c} {}", self.column_type(c, self.staging_tag_collation)))
            .collect();
        out.push(format!("CREATE TABLE {s}.st ({})", scols.join(", ")));
        out.push(format!("INSERT INTO {s}.st (time, dev, tag, v, w) VALUES {}", staged.join(", ")));
        // staging as the reference sees it: the same rows in the same order
        out.push(format!("CREATE TABLE {s}.ref_st AS SELECT * FROM {s}.st ORDER BY ctid"));
        out
    }

    /// The destination's rows before: four days, four hours a day, five devices.
    fn existing_rows(&self) -> Vec<String> {
        let mut rows = vec![];
        for day in 0..4 {
            // a date has one value a day
            for hour in if self.time_type == "date" { &[0][..] } else { &[0, 6, 12, 18][..] } {
                for slot in 0..5 {
                    let tag = if slot % 2 == 0 { "'a'" } else { "NULL" };
                    rows.push(format!(
                        "({}, {}, {tag}, {}, 'w{slot}')",
                        self.time(day, hour * 60),
                        self.dev(slot),
                        slot * 10 + *hour
                    ));
                }
            }
        }
        rows
    }

    /// Staging's rows: conflicts, new keys, repeated keys, NULLs, rows outside every chunk.
    fn staged_rows(&self, r: &mut Rng) -> Vec<String> {
        let mut keys: Vec<(String, String, String)> = vec![];
        let n = 8 + r.below(30);
        let tags: &[&str] = if self.tag_collation == "backfill_ci" {
            &["'a'", "'A'", "'b'", "NULL"]
        } else {
            &["'a'", "'b'", "NULL"]
        };
        for _ in 0..n {
            let key = match r.below(6) {
                0 | 1 => (
                    self.time(r.below(4), 360 * r.below(4)),
                    self.dev(r.below(5)),
                    r.pick(tags).to_string(),
                ),
                2 => (
                    self.time(r.below(4), 1 + r.below(1400)),
                    self.dev(r.below(5)),
                    r.pick(tags).to_string(),
                ),
                3 if !keys.is_empty() => keys[r.below(keys.len() as u64) as usize].clone(),
                4 => (
                    self.time(r.below(4), 360 * r.below(4)),
                    if self.dev_nullable { "NULL".into() } else { self.dev(0) },
                    "NULL".into(),
                ),
                _ => (
                    self.time(8 + r.below(2), r.below(1400)),
                    self.dev(r.below(5)),
                    r.pick(tags).to_string(),
                ),
            };
            keys.push(key);
        }
        keys.iter()
            .map(|(t, d, tag)| {
                format!("({t}, {d}, {tag}, {}, 'w{}')", 100 + r.below(900), r.below(7))
            })
            .collect()
    }

    fn config(&self) -> String {
        let s = &self.schema;
        let action = match self.action {
            Action::Nothing => "NOTHING",
            Action::Update => "UPDATE",
            Action::Restrict => "RESTRICT",
        };
        let mut cfg = serde_json::json!({
            "staging_table": format!("{s}.st"), "destination_hypertable": format!("{s}.m"),
            "on_conflict_action": action, "delete_from_staging": self.delete_from_staging,
            "workers": self.workers, "strategy": self.strategy,
        });
        if !self.update_columns.is_empty() {
            cfg["on_conflict_update_columns"] = serde_json::json!(self.update_columns);
        }
        if self.explicit_target {
            cfg["on_conflict_target"] = serde_json::json!(self.key);
        }
        cfg.to_string()
    }

    /// The target's columns as the run uses them (none: every unique index).
    fn target(&self) -> Vec<&'static str> {
        if self.action == Action::Nothing && !self.explicit_target {
            vec![]
        } else {
            self.key.clone()
        }
    }

    /// The destination's keys that its unique constraints forbid and it holds anyway.
    fn violations(&self, c: &mut Client) -> Vec<String> {
        let s = &self.schema;
        let mut keys: Vec<(Vec<&str>, bool)> = vec![];
        if !self.key.is_empty() {
            keys.push((self.key.clone(), self.nulls_not_distinct));
        }
        if self.second_unique {
            keys.push((vec!["w", "time"], false));
        }
        let mut out = vec![];
        for (cols, nnd) in keys {
            let list = cols.join(", ");
            let meet = if nnd {
                "true".to_string()
            } else {
                cols.iter().map(|k| format!("{k} IS NOT NULL")).collect::<Vec<_>>().join(" AND ")
            };
            let grouped = cols
                .iter()
                .map(|k| {
                    if *k == "tag" {
                        format!("tag{}", Case::collate(self.tag_collation))
                    } else {
                        k.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let dups: Vec<String> = c
                .query(
                    &format!(
                        "SELECT min(ROW({list})::text) FROM {s}.m WHERE {meet} GROUP BY \
                    {grouped} HAVING count(*) > 1"
                    ),
                    &[],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !dups.is_empty() {
                out.push(format!("the destination holds ({list}) more than once: {dups:?}"));
            }
        }
        out
    }

    /// The reference's statements: under UPDATE, the earlier of two staging rows with one
    /// key (by the index's equality) go first; then one INSERT … ON CONFLICT.
    fn reference(&self) -> Vec<String> {
        let s = &self.schema;
        let target = self.target();
        let updated: Vec<&str> = if self.update_columns.is_empty() {
            COLUMNS.iter().copied().filter(|c| !target.contains(c)).collect()
        } else {
            self.update_columns.clone()
        };
        let mut out = vec![];
        if self.action == Action::Update {
            let eq = if self.nulls_not_distinct { "IS NOT DISTINCT FROM" } else { "=" };
            let same = target
                .iter()
                .map(|k| {
                    let coll =
                        if *k == "tag" { Case::collate(self.tag_collation) } else { String::new() };
                    format!("a.{k}{coll} {eq} b.{k}{coll}")
                })
                .collect::<Vec<_>>()
                .join(" AND ");
            out.push(format!(
                "DELETE FROM {s}.ref_st AS a USING {s}.ref_st AS b WHERE {same} AND \
                a.ctid < b.ctid"
            ));
        }
        let conflict = match self.action {
            Action::Restrict => String::new(),
            Action::Nothing if target.is_empty() => " ON CONFLICT DO NOTHING".into(),
            Action::Nothing => format!(" ON CONFLICT ({}) DO NOTHING", target.join(", ")),
            Action::Update => format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                target.join(", "),
                updated
                    .iter()
                    .map(|c| format!("{c} = EXCLUDED.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        out.push(format!(
            "INSERT INTO {s}.ref_m (time, dev, tag, v, w) SELECT time, dev, tag, v, w \
            FROM {s}.ref_st ORDER BY ctid{conflict}"
        ));
        out
    }
}

/// Every row of `table` as text, sorted.
fn rows(c: &mut Client, table: &str) -> Vec<String> {
    rows_of(c, &format!("SELECT ROW(time, dev, tag, v, w)::text AS r FROM {table} ORDER BY 1"))
}

/// The one text column of `sql`'s rows.
fn rows_of(c: &mut Client, sql: &str) -> Vec<String> {
    c.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// Each chunk of the case's destination: name and status bits.
fn chunk_status(c: &mut Client, schema: &str) -> Vec<(String, i32)> {
    c.query(
        "SELECT chunk_name::text, _timescaledb_functions.chunk_status(format('%I.%I', \
         chunk_schema, chunk_name)::regclass) \
         FROM timescaledb_information.chunks WHERE hypertable_schema = $1 AND hypertable_name = \
         'm' ORDER BY 1",
        &[&schema],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Runs one case; returns what differs (empty: nothing).
fn run_case(c: &mut Client, case: &Case, script: &mut Vec<String>) -> Vec<String> {
    let mut r = Rng(case.seed ^ 0xA5A5_A5A5);
    let staged = case.staged_rows(&mut r);
    let exec = |c: &mut Client, sql: String, script: &mut Vec<String>| -> Result<(), String> {
        script.push(format!("{sql};"));
        c.batch_execute(&sql).map_err(|e| {
            e.as_db_error()
                .map(|d| format!("{}: {}", d.code().code(), d.message()))
                .unwrap_or(e.to_string())
        })
    };
    for sql in case.setup(&case.existing_rows(), &staged) {
        if let Err(e) = exec(c, sql, script) {
            return vec![format!("set-up failed: {e}")];
        }
    }
    let before = chunk_status(c, &case.schema);
    let staging_before = rows(c, &format!("{}.st", case.schema));
    let mut reference_error = None;
    for sql in case.reference() {
        if let Err(e) = exec(c, sql, script) {
            reference_error = Some(e);
            break;
        }
    }
    let hooks = format!(
        "SET backfill_ext.debug_always_route = {}; SET backfill_ext.debug_rewrite_on_disk = {}",
        case.always_route, case.rewrite_on_disk
    );
    exec(c, hooks, script).unwrap();
    let run = exec(c, format!("CALL backfill_on_schedule(0, '{}')", case.config()), script);
    let s = &case.schema;
    let mut diffs = vec![];
    for (name, status) in chunk_status(c, s) {
        let was = before.iter().find(|(n, _)| *n == name).map(|(_, st)| *st).unwrap_or(0);
        // compressed stays compressed, and a chunk that was whole is not left partial
        if was & 1 == 1 && (status & 1 == 0 || (was & 8 == 0 && status & 8 == 8)) {
            diffs.push(format!(
                "chunk {name} was compressed (status {was}) and is now status {status}"
            ));
        }
    }
    let held: i64 =
        c.query_one("SELECT count(*) FROM _backfill_ext.policy_hold", &[]).unwrap().get(0);
    if held > 0 {
        diffs.push(format!("{held} policy holds left"));
    }
    let staging_after = rows(c, &format!("{s}.st"));
    if run.is_ok() {
        diffs.extend(case.violations(c));
    }
    match (&reference_error, &run) {
        (None, Ok(())) => {
            let (got, want) = (rows(c, &format!("{s}.m")), rows(c, &format!("{s}.ref_m")));
            if got != want {
                // multiset differences: a row held twice where the reference holds it once is extra
                let less = |a: &[String], b: &[String]| -> Vec<String> {
                    let mut rest = b.to_vec();
                    a.iter()
                        .filter(|x| {
                            rest.iter().position(|y| y == *x).map(|i| rest.remove(i)).is_none()
                        })
                        .cloned()
                        .collect()
                };
                let (missing, extra) = (less(&want, &got), less(&got, &want));
                diffs.push(format!(
                    "destination differs from the reference: missing {missing:?}, \
                    extra {extra:?} ({} vs {} rows)",
                    got.len(),
                    want.len()
                ));
            }
            if case.cagg {
                let (agg, fresh) = (
                    rows_of(
                        c,
                        &format!(
                            "SELECT ROW(b, dev, n, sv)::text FROM {s}.m_daily ORDER BY \
                        1"
                        ),
                    ),
                    rows_of(
                        c,
                        &format!(
                            "SELECT ROW(time_bucket('1 day', time), dev, count(*), \
                        sum(v))::text FROM {s}.m GROUP BY time_bucket('1 day', time), dev ORDER BY \
                        1"
                        ),
                    ),
                );
                if agg != fresh {
                    diffs.push(format!(
                        "the continuous aggregate holds {agg:?}, the destination grouped {fresh:?}"
                    ));
                }
            }
            let want_staging =
                if case.delete_from_staging { vec![] } else { staging_before.clone() };
            if staging_after != want_staging {
                diffs.push(format!("staging left {staging_after:?}, expected {want_staging:?}"));
            }
        }
        (Some(e), Ok(())) => {
            diffs.push(format!("the reference failed ({e}) but the run succeeded"))
        }
        (None, Err(e)) => diffs.push(format!("the run failed ({e}) where the reference succeeded")),
        (Some(_), Err(_)) => {
            // nothing lost: every row the run took from staging has its key in the
            // destination (the text of a key that compares by a collation may differ)
            let dest = rows(c, &format!("{s}.m"));
            // the fields of the target key (of every column without one)
            let at: Vec<usize> = COLUMNS
                .iter()
                .enumerate()
                .filter(|(_, c)| case.key.is_empty() || case.key.contains(c))
                .map(|(i, _)| i)
                .collect();
            let key_of = |row: &str| -> Vec<String> {
                let f: Vec<&str> =
                    row.trim_matches(|ch| ch == '(' || ch == ')').split(',').collect();
                at.iter().map(|i| f[*i].to_string()).collect()
            };
            let mut left = staging_after.clone();
            for row in &staging_before {
                if let Some(i) = left.iter().position(|x| x == row) {
                    left.remove(i);
                } else if !dest.iter().any(|d| key_of(d) == key_of(row)) {
                    diffs.push(format!(
                        "staging row {row} is neither in staging nor in the \
                        destination after the failed run"
                    ));
                }
            }
        }
    }
    diffs
}

fn run_seeds(first: u64) {
    let cases: u64 =
        std::env::var("BACKFILL_DIFF_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(80);
    let base: u64 =
        std::env::var("BACKFILL_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cl = timescale_cluster();
    let mut c = cl.create_db("diff");
    let icu = c
        .batch_execute(
            "CREATE COLLATION backfill_ci (provider = icu, locale = 'und-u-ks-level2', \
            deterministic = false)",
        )
        .is_ok();
    // cases with a nondeterministic collation run wherever PostgreSQL has ICU
    assert_eq!(icu, cfg!(icu), "ICU collations, as tests/build.rs read pg_config");
    let (mut failures, mut with_cagg) = (vec![], 0);
    for k in 0..cases {
        let seed = base + first * 1_000_000 + k;
        let case = Case::new(seed, icu);
        with_cagg += case.cagg as u64;
        let mut script = vec![];
        let diffs = run_case(&mut c, &case, &mut script);
        if diffs.is_empty() {
            c.batch_execute(&format!("DROP SCHEMA {} CASCADE", case.schema)).unwrap();
        } else {
            failures.push(format!(
                "seed {seed}: {}\n  case: {case:?}\n  to reproduce (in a database with timescaledb \
                 and backfill_ext{}):\n{}",
                diffs.join("\n  "),
                if icu { ", and CREATE COLLATION backfill_ci (provider = icu, locale = \
                    'und-u-ks-level2', deterministic = false)" } else { "" },
                script.join("\n")
            ));
        }
    }
    println!(
        "differential: {cases} cases from seed {} ({with_cagg} with a continuous aggregate), \
        {} differing",
        base + first * 1_000_000,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ from the reference:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

timescale_test! {
    fn differential_cases_a() {
        run_seeds(1);
    }
}

timescale_test! {
    fn differential_cases_b() {
        run_seeds(2);
    }
}

timescale_test! {
    fn differential_cases_c() {
        run_seeds(3);
    }
}

timescale_test! {
    fn differential_cases_d() {
        run_seeds(4);
    }
}
