//! Writing a rewrite's rows into its emptied chunk the way `COPY` and `CREATE INDEX`
//! do, not the way `INSERT` does. `INSERT … SELECT` writes a WAL record and an entry in
//! every index per row; here the heap is filled in batches (one WAL record per page,
//! `table_multi_insert`), each row's NOT NULL and CHECK constraints are checked as an
//! insert would, and the caller then rebuilds the chunk's indexes from the heap
//! (`REINDEX`, which writes each index once, page by page, and checks unique keys).
//!
//! Only for a chunk an ordinary insert would not do more for: a heap table with no
//! triggers, rules or row-level security, whose columns the rows have by name and type.
//! Otherwise `write_array` returns why not, having done nothing, and the caller
//! inserts.

use crate::columns::{attribute_map, Attribute};
use crate::error::{BackfillError, Code};
use pgrx::pg_sys;
use pgrx::PgTupleDesc;
use std::ffi::CStr;

/// Rows a batch holds (as `COPY` buffers them).
const BATCH: usize = 1000;

/// Writes the rows of `rows` (an array of a composite type, as `query_value_and_counts`
/// returned it) into the table `chunk`, which the transaction emptied and holds under
/// an exclusive lock; the caller rebuilds its indexes next, before anything reads
/// them. Returns the rows written, or why the table needs an ordinary insert.
pub fn write_array(chunk: pg_sys::Oid, rows: pg_sys::Datum) -> Result<i64, &'static str> {
    unsafe {
        let rel = pg_sys::table_open(chunk, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        let r = write_into(rel, rows);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        if r.is_ok() {
            pg_sys::CommandCounterIncrement();
        }
        r
    }
}

/// Why `rel` needs an ordinary insert, if it does.
unsafe fn needs_insert(rel: pg_sys::Relation) -> Option<&'static str> {
    let form = &*(*rel).rd_rel;
    if form.relkind as u8 != pg_sys::RELKIND_RELATION || form.relam != pg_sys::HEAP_TABLE_AM_OID {
        Some("the chunk is not a heap table")
    } else if !(*rel).trigdesc.is_null() {
        Some("the chunk has triggers")
    } else if !(*rel).rd_rules.is_null() || form.relrowsecurity {
        Some("the chunk has rules or row-level security")
    } else {
        None
    }
}

unsafe fn attributes(desc: &PgTupleDesc) -> Vec<Attribute> {
    desc.iter()
        .map(|a| Attribute { name: CStr::from_ptr(a.attname.data.as_ptr()).to_string_lossy().into_owned(), type_oid: a.atttypid.to_u32(), dropped: a.attisdropped })
        .collect()
}

unsafe fn write_into(rel: pg_sys::Relation, rows: pg_sys::Datum) -> Result<i64, &'static str> {
    if let Some(why) = needs_insert(rel) {
        return Err(why);
    }
    let array = pg_sys::pg_detoast_datum(rows.cast_mut_ptr()) as *mut pg_sys::ArrayType;
    let element_type = (*array).elemtype;
    let from = PgTupleDesc::from_pg(pg_sys::lookup_rowtype_tupdesc(element_type, -1));
    let to = PgTupleDesc::from_pg_unchecked((*rel).rd_att);
    let Some(map) = attribute_map(&attributes(&from), &attributes(&to)) else {
        return Err("the chunk's columns differ from the rows'");
    };
    if pg_sys::pg_class_aclcheck((*rel).rd_id, pg_sys::GetUserId(), pg_sys::ACL_INSERT as pg_sys::AclMode) != pg_sys::AclResult::ACLCHECK_OK {
        crate::spi::raise(
            BackfillError::new(Code::InsufficientPrivilege, "permission denied to insert into the chunk being rewritten")
                .hint("Grant INSERT on the destination to the role that runs backfill_ext."),
        );
    }

    let (mut len, mut byval, mut align) = (0i16, false, 0 as std::ffi::c_char);
    pg_sys::get_typlenbyvalalign(element_type, &mut len, &mut byval, &mut align);
    let mut elements: *mut pg_sys::Datum = std::ptr::null_mut();
    let mut nulls: *mut bool = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    pg_sys::deconstruct_array(array, element_type, len as _, byval, align, &mut elements, &mut nulls, &mut n);

    let estate = pg_sys::CreateExecutorState();
    let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
    pg_sys::InitResultRelInfo(rri, rel, 0, std::ptr::null_mut(), 0);
    let constrained = !(*(*rel).rd_att).constr.is_null();
    let multi_insert = (*(*rel).rd_tableam).multi_insert.expect("a heap table inserts in batches");
    let bistate = pg_sys::GetBulkInsertState();
    let cid = pg_sys::GetCurrentCommandId(true);
    let mut slots: Vec<*mut pg_sys::TupleTableSlot> = (0..BATCH).map(|_| pg_sys::table_slot_create(rel, std::ptr::null_mut())).collect();
    let mut values = vec![pg_sys::Datum::from(0usize); from.len()];
    let mut isnull = vec![true; from.len()];
    let mut filled = 0usize;
    let flush = |filled: &mut usize, slots: &mut Vec<*mut pg_sys::TupleTableSlot>| {
        if *filled > 0 {
            multi_insert(rel, slots.as_mut_ptr(), *filled as _, cid, 0, bistate);
            for s in &slots[..*filled] {
                pg_sys::ExecClearTuple(*s);
            }
            *filled = 0;
        }
    };
    for i in 0..n as usize {
        if *nulls.add(i) {
            crate::spi::raise(BackfillError::new(Code::ObjectNotInPrerequisiteState, "internal: a rewritten row is NULL"));
        }
        let header = pg_sys::pg_detoast_datum((*elements.add(i)).cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let mut tuple = pg_sys::HeapTupleData {
            t_len: pgrx::varlena::varsize(header as *const pg_sys::varlena) as u32,
            t_self: std::mem::zeroed(),
            t_tableOid: pg_sys::InvalidOid,
            t_data: header,
        };
        pg_sys::heap_deform_tuple(&mut tuple, from.as_ptr(), values.as_mut_ptr(), isnull.as_mut_ptr());
        let slot = slots[filled];
        pg_sys::ExecClearTuple(slot);
        for (j, m) in map.iter().enumerate() {
            let (v, null) = m.map_or((pg_sys::Datum::from(0usize), true), |k| (values[k], isnull[k]));
            *(*slot).tts_values.add(j) = v;
            *(*slot).tts_isnull.add(j) = null;
        }
        pg_sys::ExecStoreVirtualTuple(slot);
        if constrained {
            pg_sys::ExecConstraints(rri, slot, estate);
            let econtext = (*estate).es_per_tuple_exprcontext;
            if !econtext.is_null() {
                pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
            }
        }
        filled += 1;
        if filled == BATCH {
            flush(&mut filled, &mut slots);
        }
    }
    flush(&mut filled, &mut slots);
    pg_sys::FreeBulkInsertState(bistate);
    if let Some(finish) = (*(*rel).rd_tableam).finish_bulk_insert {
        finish(rel, 0);
    }
    for s in slots {
        pg_sys::ExecDropSingleTupleTableSlot(s);
    }
    pg_sys::FreeExecutorState(estate);
    Ok(n as i64)
}
