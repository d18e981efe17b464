/* The cluster store's integrations, credentials, organization keys, audit log and API tokens (see
 * store_redis_internal.h). Until they move to Redis these stay in each node's local store. */
#include "store_redis_internal.h"

void jn_sr_tenancy_ops(jn_store_ops_t *ops)
{
    (void)ops;
}
