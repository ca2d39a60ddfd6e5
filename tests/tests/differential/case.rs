//! The differential harness's generator: seeded random cases (schema, data, staging
//! rows and config), the statements that set each up, and the reference's statements.

use backfill_ext_client_tests::Client;

/// splitmix64: a small, seeded, portable generator.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub(crate) fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Action {
    Nothing,
    Update,
    Restrict,
}

/// One generated case.
#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) seed: u64,
    pub(crate) schema: String,
    pub(crate) time_type: &'static str,
    pub(crate) dev_type: &'static str,
    pub(crate) dev_nullable: bool,
    /// The destination's collation of `tag`, and staging's.
    pub(crate) tag_collation: &'static str,
    pub(crate) staging_tag_collation: &'static str,
    /// Key columns of the unique index (empty: none), primary key or not.
    pub(crate) key: Vec<&'static str>,
    pub(crate) primary: bool,
    pub(crate) nulls_not_distinct: bool,
    pub(crate) second_unique: bool,
    pub(crate) partial_unique: bool,
    pub(crate) segmentby: Vec<&'static str>,
    pub(crate) orderby_desc: bool,
    pub(crate) dropped_column: bool,
    pub(crate) partial_chunk: bool,
    pub(crate) uncompressed_chunk: bool,
    pub(crate) action: Action,
    pub(crate) update_columns: Vec<&'static str>,
    pub(crate) explicit_target: bool,
    pub(crate) delete_from_staging: bool,
    pub(crate) workers: u64,
    pub(crate) always_route: bool,
    pub(crate) rewrite_on_disk: bool,
    pub(crate) strategy: &'static str,
    pub(crate) staging_order: Vec<&'static str>,
    /// A continuous aggregate on the destination (daily count and sum per device).
    pub(crate) cagg: bool,
}

pub(crate) const COLUMNS: [&str; 5] = ["time", "dev", "tag", "v", "w"];

impl Case {
    pub(crate) fn new(seed: u64, icu: bool) -> Case {
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
        let (key, primary, nulls_not_distinct, second_unique, partial_unique) =
            Case::unique_indexes(&mut r, dev_nullable);
        let deterministic_tag = tag_collation != "backfill_ci";
        let segmentby = match r.below(4) {
            0 => vec![],
            1 if deterministic_tag => vec!["dev", "tag"],
            _ => vec!["dev"],
        };
        let (action, update_columns, explicit_target, delete_from_staging) =
            Case::conflict_handling(&mut r, &key, second_unique);
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

    /// The unique index's key columns (empty: none), whether it is the primary key and
    /// treats NULLs as not distinct, and whether a second and a partial unique index exist.
    fn unique_indexes(
        r: &mut Rng,
        dev_nullable: bool,
    ) -> (Vec<&'static str>, bool, bool, bool, bool) {
        let key: Vec<&str> = match r.below(4) {
            0 => vec![],
            1 => vec!["dev", "time"],
            _ => vec!["dev", "tag", "time"],
        };
        let primary = !key.is_empty() && !dev_nullable && !key.contains(&"tag") && r.chance(50);
        let nulls_not_distinct = !key.is_empty() && !primary && r.chance(25);
        let second_unique = !key.is_empty() && r.chance(15);
        let partial_unique = r.chance(10);
        (key, primary, nulls_not_distinct, second_unique, partial_unique)
    }

    /// The conflict action, the columns an UPDATE sets, whether the target is named, and
    /// whether the run deletes from staging.
    fn conflict_handling(
        r: &mut Rng,
        key: &[&'static str],
        second_unique: bool,
    ) -> (Action, Vec<&'static str>, bool, bool) {
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
        (action, update_columns, explicit_target, delete_from_staging)
    }

    /// A value of the time column: `day` days and `minute` minutes after the start.
    pub(crate) fn time(&self, day: u64, minute: u64) -> String {
        match self.time_type {
            "bigint" => (day * 86400 + minute * 60).to_string(),
            "date" => format!("(date '2024-01-01' + {day})"),
            t => format!(
                "({t} '2024-01-01 00:00:00+00' + interval '{day} days {minute} minutes')::{t}"
            ),
        }
    }

    /// Device `slot` (4: NULL where the column may be NULL).
    pub(crate) fn dev(&self, slot: u64) -> String {
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

    pub(crate) fn collate(c: &str) -> String {
        if c == "default" {
            String::new()
        } else {
            format!(" COLLATE {c}")
        }
    }

    pub(crate) fn column_type(&self, c: &str, tag_collation: &str) -> String {
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
    pub(crate) fn setup(&self, rows: &[String], staged: &[String]) -> Vec<String> {
        let mut out = self.destination();
        out.extend(self.compressed_rows(rows));
        out.extend(self.staging(staged));
        out
    }

    /// The statements that make the destination hypertable and its reference twin, with
    /// the same columns and unique indexes.
    fn destination(&self) -> Vec<String> {
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
        out
    }

    /// The statements that make the destination compressed, with its rows (and those of the
    /// reference) and its continuous aggregate.
    fn compressed_rows(&self, rows: &[String]) -> Vec<String> {
        let s = &self.schema;
        let mut out = vec![];
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
        out
    }

    /// The statements that make staging and the reference's copy of it.
    fn staging(&self, staged: &[String]) -> Vec<String> {
        let s = &self.schema;
        let mut out = vec![];
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
    pub(crate) fn existing_rows(&self) -> Vec<String> {
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
    pub(crate) fn staged_rows(&self, r: &mut Rng) -> Vec<String> {
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

    pub(crate) fn config(&self) -> String {
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
    pub(crate) fn target(&self) -> Vec<&'static str> {
        if self.action == Action::Nothing && !self.explicit_target {
            vec![]
        } else {
            self.key.clone()
        }
    }

    /// The destination's keys that its unique constraints forbid and it holds anyway.
    pub(crate) fn violations(&self, c: &mut Client) -> Vec<String> {
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
    pub(crate) fn reference(&self) -> Vec<String> {
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
