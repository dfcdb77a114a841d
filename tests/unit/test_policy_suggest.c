/*
 * test_policy_suggest.c - "did you mean" on its own (suggest_option()): a typo
 * within two edits names the option, anything farther names none.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "parse.h"

Test(policy_suggest, names_no_option_for_what_is_not_a_typo)
{
	static const char *const far[] = {
	    "", "x", "zz", "xyzzyq", "certificate-authority", "ciphersuitesxyz", "ab"};

	for (size_t i = 0; i < sizeof(far) / sizeof(far[0]); i++)
		cr_expect_null(suggest_option(far[i], strlen(far[i])), "'%s': got '%s'", far[i],
			       suggest_option(far[i], strlen(far[i])));
}

Test(policy_suggest, names_the_nearest_option_within_two_edits)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
	    {"cert", "cert"}, /* itself (the parser asks only for unknown ones) */
	    {"kye", "key"},   /* a swap is one edit */
	    {"sin", "sni"},
	    {"ciphr", "ciphers"},
	    {"minversion", "min-version"},
	    {"client_ca", "client-ca"},
	    {"handshake-timout", "handshake-timeout"},
	    {"starttsl", "starttls"},
	    {"ca=", "ca"},
	    {"alpn2", "alpn"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = suggest_option(cases[i].in, strlen(cases[i].in));

		cr_expect_str_eq(got ? got : "(none)", cases[i].want, "'%s'", cases[i].in);
	}
}
