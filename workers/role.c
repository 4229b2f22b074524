/*
 * role.c -- see role.h: the one place a plugin's role picks a table.
 */
#include "role.h"

const dcb_role_ops_t *role_ops(dcbus_role_t role)
{
    switch (role) {
    case DCBUS_ROLE_COLLECTOR:
        return &collector_ops;
    case DCBUS_ROLE_PROCESSOR:
        return &processor_ops;
    case DCBUS_ROLE_STORAGE:
        return &storage_ops;
    default:
        return &handler_ops;
    }
}
