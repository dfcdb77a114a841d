/*
 * test_env.c - policy/env.h, the names of the environment variables, against
 * the documentation users read: every variable a user sets is spelt the same
 * in the README and in tlsshim(1), with its default where it has one.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"

/* The whole of PATH (relative to the source tree, where the tests run), NUL-terminated. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s: cannot open (are the tests run from the source tree?)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* Whether TEXT names NAME as a whole word (TLSSHIM_LOG is not TLSSHIM_LOG_FILE). */
static int names(const char *text, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strstr(text, name); p != NULL; p = strstr(p + 1, name)) {
		char after = p[n];

		if (!(after == '_' || (after >= 'A' && after <= 'Z')))
			return 1;
	}
	return 0;
}

static const char *const user_vars[] = {ENV_POLICY, ENV_POLICY_FILE, ENV_LOG,      ENV_LOG_FILE,
					ENV_KEYLOG, ENV_STATS,       ENV_STATS_DIR};

Test(env, every_variable_has_the_prefix)
{
	for (size_t i = 0; i < sizeof(user_vars) / sizeof(user_vars[0]); i++)
		cr_expect_eq(strncmp(user_vars[i], ENV_PREFIX, strlen(ENV_PREFIX)), 0, "%s",
			     user_vars[i]);
	cr_expect_eq(strncmp(ENV_INHERIT, ENV_PREFIX, strlen(ENV_PREFIX)), 0, "%s", ENV_INHERIT);
}

Test(env, every_variable_a_user_sets_is_documented)
{
	static const char *const docs[] = {"README.md", "doc/tlsshim.1"};

	for (size_t d = 0; d < sizeof(docs) / sizeof(docs[0]); d++) {
		char *text = slurp(docs[d]);

		for (size_t i = 0; i < sizeof(user_vars) / sizeof(user_vars[0]); i++)
			cr_expect(names(text, user_vars[i]), "%s does not name %s", docs[d],
				  user_vars[i]);
		free(text);
	}
}

Test(env, the_defaults_are_the_documented_ones)
{
	char *readme = slurp("README.md");

	cr_expect(strstr(readme, ENV_STATS_DIR_DEFAULT) != NULL, "README: %s",
		  ENV_STATS_DIR_DEFAULT);
	cr_expect(strstr(readme, ENV_STATS "=" ENV_STATS_OFF) != NULL ||
		      strstr(readme, "`" ENV_STATS_OFF "`") != NULL,
		  "README: %s=%s", ENV_STATS, ENV_STATS_OFF);
	cr_expect(strstr(readme, "`" ENV_LOG_DEFAULT "` (default)") != NULL,
		  "README: `%s` (default)", ENV_LOG_DEFAULT);
	free(readme);
}
