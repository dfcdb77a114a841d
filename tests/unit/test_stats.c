/*
 * test_stats.c - unit tests of shim/stats.c: which reason a failure's log
 * text is counted under (the reasons conn.c and the engine write).
 */
#include <criterion/criterion.h>

#include "stats.h"

Test(stats_fail_class, classifies_the_reasons_the_shim_logs)
{
	static const struct {
		const char *reason;
		int cls;
	} cases[] = {
	    {"certificate verify failed: hostname mismatch", STATS_FAIL_VERIFY},
	    {"client certificate verify failed: unable to get local issuer certificate",
	     STATS_FAIL_VERIFY},
	    {"client certificate not allowed: uri:spiffe://x/y", STATS_FAIL_VERIFY},
	    {"certificate pin mismatch", STATS_FAIL_VERIFY},
	    {"client did not send a certificate", STATS_FAIL_VERIFY},
	    {"handshake timed out after 10000 ms", STATS_FAIL_TIMEOUT},
	    {"the client sent nothing within 10000 ms (auto)", STATS_FAIL_TIMEOUT},
	    {"peer is not speaking TLS (wrong version number)", STATS_FAIL_NOT_TLS},
	    {"peer is not speaking TLS (HTTP request)", STATS_FAIL_NOT_TLS},
	    {"peer sent alert: handshake failure", STATS_FAIL_ALERT},
	    {"unsupported protocol version (peer sent alert)", STATS_FAIL_ALERT},
	    {"handshake: the peer closed the connection", STATS_FAIL_CLOSED},
	    {"connection closed by peer during handshake", STATS_FAIL_CLOSED},
	    {"handshake: Connection reset by peer", STATS_FAIL_CLOSED},
	    {"no shared cipher", STATS_FAIL_OTHER},
	    {"cannot load cert /x: no start line", STATS_FAIL_OTHER},
	    {NULL, STATS_FAIL_OTHER},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(stats_fail_class(cases[i].reason), cases[i].cls,
			     "reason \"%s\": expected class %d, got %d",
			     cases[i].reason ? cases[i].reason : "(null)", cases[i].cls,
			     stats_fail_class(cases[i].reason));
}
