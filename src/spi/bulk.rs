//! Writing a rewrite's rows into its emptied chunk the way `COPY` and `CREATE INDEX`
//! do, not the way `INSERT` does. `INSERT … SELECT` writes a WAL record and an entry in
//! every index per row; here the heap is filled in batches (one WAL record per page,
//! `table_multi_insert`), each row's NOT NULL and CHECK constraints are checked as an
//! insert would, and the caller then rebuilds the chunk's indexes from the heap
//! (`REINDEX`, which writes each index once, page by page, and checks unique keys).
//!
//! Only for a chunk an ordinary insert would not do more for: a heap table with no
//! triggers, rules or row-level security, whose columns the rows have by name and type.
//! Otherwise the writers return why not, having written nothing, and the caller
//! inserts.

use crate::columns::{attribute_map, Attribute};
use crate::error::{BackfillError, Code};
use pgrx::pg_sys;
use pgrx::{PgMemoryContexts, PgTupleDesc};
use std::ffi::CStr;
use std::ptr::null_mut;

/// Rows a batch holds (as `COPY` buffers them).
const BATCH: usize = 1000;

/// Writes the rows of `rows` (an array of a composite type, as `query_value_and_counts`
/// returned it) into the table `chunk`, which the transaction emptied and holds under
/// an exclusive lock; the caller rebuilds its indexes next, before anything reads
/// them. Returns the rows written, or why the table needs an ordinary insert.
pub fn write_array(chunk: pg_sys::Oid, rows: pg_sys::Datum) -> Result<i64, &'static str> {
    unsafe {
        let array = pg_sys::pg_detoast_datum(rows.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let element_type = (*array).elemtype;
        let from = PgTupleDesc::from_pg(pg_sys::lookup_rowtype_tupdesc(element_type, -1));
        with_writer(chunk, &from, |w| {
            let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
            pg_sys::get_typlenbyvalalign(element_type, &mut len, &mut byval, &mut align);
            let mut elements: *mut pg_sys::Datum = null_mut();
            let mut nulls: *mut bool = null_mut();
            let mut n: std::ffi::c_int = 0;
            pg_sys::deconstruct_array(
                array,
                element_type,
                len as _,
                byval,
                align,
                &mut elements,
                &mut nulls,
                &mut n,
            );
            for i in 0..n as usize {
                if *nulls.add(i) {
                    crate::spi::raise(BackfillError::new(
                        Code::ObjectNotInPrerequisiteState,
                        "internal: a rewritten row is NULL",
                    ));
                }
                let header = pg_sys::pg_detoast_datum((*elements.add(i)).cast_mut_ptr())
                    as pg_sys::HeapTupleHeader;
                let mut tuple = pg_sys::HeapTupleData {
                    t_len: pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32,
                    t_self: std::mem::zeroed(),
                    t_tableOid: pg_sys::InvalidOid,
                    t_data: header,
                };
                w.push(&mut tuple);
            }
            pg_sys::pfree(elements.cast());
            pg_sys::pfree(nulls.cast());
        })
    }
}

/// Like `write_array`, from every row of the table `source` (a temporary table the
/// transaction wrote; columns it has beyond the chunk's are left out).
pub fn write_table(chunk: pg_sys::Oid, source: pg_sys::Oid) -> Result<i64, &'static str> {
    unsafe {
        let src = pg_sys::table_open(source, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let r = if (*(*src).rd_rel).relam != pg_sys::HEAP_TABLE_AM_OID {
            Err("the rows are not in a heap table")
        } else {
            let from = PgTupleDesc::from_pg_unchecked((*src).rd_att);
            with_writer(chunk, &from, |w| {
                let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
                let scan = pg_sys::table_beginscan(src, snapshot, 0, null_mut());
                loop {
                    let tuple =
                        pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
                    if tuple.is_null() {
                        break;
                    }
                    w.push(&mut *tuple);
                }
                pg_sys::heap_endscan(scan);
                pg_sys::UnregisterSnapshot(snapshot);
            })
        };
        pg_sys::table_close(src, pg_sys::NoLock as pg_sys::LOCKMODE);
        r
    }
}

/// Opens `chunk`, checks it can be written in bulk from rows of `from`'s columns, lets
/// `fill` push the rows, and writes what is left.
unsafe fn with_writer(
    chunk: pg_sys::Oid,
    from: &PgTupleDesc,
    fill: impl FnOnce(&mut Writer),
) -> Result<i64, &'static str> {
    let rel = pg_sys::table_open(chunk, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
    let r = Writer::new(rel, from).map(|mut w| {
        fill(&mut w);
        w.finish()
    });
    pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    if r.is_ok() {
        pg_sys::CommandCounterIncrement();
    }
    r
}

unsafe fn attributes(desc: &PgTupleDesc) -> Vec<Attribute> {
    desc.iter()
        .map(|a| Attribute {
            name: CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned(),
            type_oid: a.atttypid.to_u32(),
            dropped: a.attisdropped,
        })
        .collect()
}

/// Rows going into one table in batches, each checked against its constraints.
struct Writer {
    rel: pg_sys::Relation,
    /// The rows' descriptor, and for each column of the table the rows' column it takes.
    from: pg_sys::TupleDesc,
    map: Vec<Option<usize>>,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    constrained: bool,
    bistate: pg_sys::BulkInsertState,
    cid: pg_sys::CommandId,
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    filled: usize,
    /// What writing one batch allocates (its tuples as the heap stores them, their
    /// pointers, the WAL record), emptied after each batch as `COPY` does: a chunk of
    /// millions of rows takes no more memory than one batch.
    batch: PgMemoryContexts,
    values: Vec<pg_sys::Datum>,
    isnull: Vec<bool>,
    written: i64,
}

impl Writer {
    unsafe fn new(rel: pg_sys::Relation, from: &PgTupleDesc) -> Result<Writer, &'static str> {
        let form = &*(*rel).rd_rel;
        if form.relkind as u8 != pg_sys::RELKIND_RELATION || form.relam != pg_sys::HEAP_TABLE_AM_OID
        {
            return Err("the chunk is not a heap table");
        } else if !(*rel).trigdesc.is_null() {
            return Err("the chunk has triggers");
        } else if !(*rel).rd_rules.is_null() || form.relrowsecurity {
            return Err("the chunk has rules or row-level security");
        }
        let to = PgTupleDesc::from_pg_unchecked((*rel).rd_att);
        let Some(map) = attribute_map(&attributes(from), &attributes(&to)) else {
            return Err("the chunk's columns differ from the rows'");
        };
        if pg_sys::pg_class_aclcheck(
            (*rel).rd_id,
            pg_sys::GetUserId(),
            pg_sys::ACL_INSERT as pg_sys::AclMode,
        ) != pg_sys::AclResult::ACLCHECK_OK
        {
            crate::spi::raise(
                BackfillError::new(
                    Code::InsufficientPrivilege,
                    "permission denied to insert into the chunk being rewritten",
                )
                .hint("Grant INSERT on the destination to the role that runs backfill_ext."),
            );
        }
        let estate = pg_sys::CreateExecutorState();
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
            as *mut pg_sys::ResultRelInfo;
        pg_sys::InitResultRelInfo(rri, rel, 0, null_mut(), 0);
        Ok(Writer {
            rel,
            from: from.as_ptr(),
            map,
            estate,
            rri,
            constrained: !(*(*rel).rd_att).constr.is_null(),
            bistate: pg_sys::GetBulkInsertState(),
            cid: pg_sys::GetCurrentCommandId(true),
            slots: (0..BATCH).map(|_| pg_sys::table_slot_create(rel, null_mut())).collect(),
            filled: 0,
            batch: PgMemoryContexts::new("backfill_ext bulk write batch"),
            values: vec![pg_sys::Datum::from(0usize); from.len()],
            isnull: vec![true; from.len()],
            written: 0,
        })
    }

    /// Adds a row of the rows' descriptor; it is copied when its batch is written.
    unsafe fn push(&mut self, tuple: &mut pg_sys::HeapTupleData) {
        pg_sys::heap_deform_tuple(
            tuple,
            self.from,
            self.values.as_mut_ptr(),
            self.isnull.as_mut_ptr(),
        );
        let slot = self.slots[self.filled];
        pg_sys::ExecClearTuple(slot);
        for (j, m) in self.map.iter().enumerate() {
            let (v, null) =
                m.map_or((pg_sys::Datum::from(0usize), true), |k| (self.values[k], self.isnull[k]));
            *(*slot).tts_values.add(j) = v;
            *(*slot).tts_isnull.add(j) = null;
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        if self.constrained {
            pg_sys::ExecConstraints(self.rri, slot, self.estate);
            let econtext = (*self.estate).es_per_tuple_exprcontext;
            if !econtext.is_null() {
                pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
            }
        }
        // a row from a table scan lives only until the next one: the batch keeps a copy
        pg_sys::ExecMaterializeSlot(slot);
        self.filled += 1;
        if self.filled == BATCH {
            self.flush();
        }
    }

    unsafe fn flush(&mut self) {
        if self.filled > 0 {
            let multi_insert =
                (*(*self.rel).rd_tableam).multi_insert.expect("a heap table inserts in batches");
            let (rel, slots, cid, bistate) =
                (self.rel, self.slots.as_mut_ptr(), self.cid, self.bistate);
            let n = self.filled as _;
            self.batch.switch_to(|_| multi_insert(rel, slots, n, cid, 0, bistate));
            for s in &self.slots[..self.filled] {
                pg_sys::ExecClearTuple(*s);
            }
            self.batch.reset();
            self.written += self.filled as i64;
            self.filled = 0;
        }
    }

    unsafe fn finish(mut self) -> i64 {
        self.flush();
        pg_sys::FreeBulkInsertState(self.bistate);
        if let Some(finish) = (*(*self.rel).rd_tableam).finish_bulk_insert {
            finish(self.rel, 0);
        }
        for s in &self.slots {
            pg_sys::ExecDropSingleTupleTableSlot(*s);
        }
        pg_sys::FreeExecutorState(self.estate);
        self.written
    }
}
