#ifndef LEDGERLIFT_CLIBPQ_SHIM_H
#define LEDGERLIFT_CLIBPQ_SHIM_H

// pkg-config normally puts /usr/include/postgresql on the include path; fall back to the
// Debian location so a machine without pkg-config still builds.
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif

#include <poll.h>

// The PG_DIAG_* field codes are character-literal macros, which Swift does not import.
// Re-expose the ones we read as constants.
static const int LL_PG_DIAG_SEVERITY = PG_DIAG_SEVERITY_NONLOCALIZED;
static const int LL_PG_DIAG_SQLSTATE = PG_DIAG_SQLSTATE;
static const int LL_PG_DIAG_MESSAGE_PRIMARY = PG_DIAG_MESSAGE_PRIMARY;
static const int LL_PG_DIAG_MESSAGE_DETAIL = PG_DIAG_MESSAGE_DETAIL;
static const int LL_PG_DIAG_MESSAGE_HINT = PG_DIAG_MESSAGE_HINT;
static const int LL_PG_DIAG_CONTEXT = PG_DIAG_CONTEXT;
static const int LL_PG_DIAG_SCHEMA_NAME = PG_DIAG_SCHEMA_NAME;
static const int LL_PG_DIAG_TABLE_NAME = PG_DIAG_TABLE_NAME;
static const int LL_PG_DIAG_COLUMN_NAME = PG_DIAG_COLUMN_NAME;
static const int LL_PG_DIAG_DATATYPE_NAME = PG_DIAG_DATATYPE_NAME;
static const int LL_PG_DIAG_CONSTRAINT_NAME = PG_DIAG_CONSTRAINT_NAME;
static const int LL_PG_DIAG_STATEMENT_POSITION = PG_DIAG_STATEMENT_POSITION;

#endif
