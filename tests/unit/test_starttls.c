/*
 * test_starttls.c - unit tests of the STARTTLS machines (shim/starttls*.c)
 * against recorded dialogues: each peer's bytes are fed whole, in pieces and
 * one byte at a time, and what the machine sent, what the program will read
 * first, and the verdict must not depend on how the bytes arrived.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "starttls.h"

struct run {
	int rc;
	char sent[2048];
	size_t sent_len;
	size_t peer_used; /* peer bytes the machine read */
};

/*
 * Drives S with the peer's bytes PEER[0..N), CHUNK at a most per read (and
 * never more than s->read_max), until a verdict or the peer has nothing
 * more to say (then the verdict is STLS_WANT_READ).
 */
static struct run drive(struct stls *s, const char *peer, size_t n, size_t chunk)
{
	struct run r = {0};

	for (int guard = 0; guard < 100000; guard++) {
		r.rc = stls_step(s);
		if (r.rc == STLS_WANT_WRITE) {
			cr_assert(s->out_len > 0 && r.sent_len + s->out_len <= sizeof(r.sent));
			memcpy(r.sent + r.sent_len, s->out, s->out_len);
			r.sent_len += s->out_len;
			s->out_len = 0;
			continue;
		}
		if (r.rc != STLS_WANT_READ)
			return r;
		if (r.peer_used == n)
			return r;
		size_t k = n - r.peer_used;

		if (k > chunk)
			k = chunk;
		if (k > s->read_max)
			k = s->read_max;
		if (k > sizeof(s->in) - s->in_len)
			k = sizeof(s->in) - s->in_len;
		cr_assert(k > 0, "the machine asked to read nothing");
		memcpy(s->in + s->in_len, peer + r.peer_used, k);
		s->in_len += k;
		r.peer_used += k;
	}
	cr_assert_fail("no verdict");
	return r;
}

static const size_t chunks[] = {1, 2, 3, 7, 4096};
#define NCHUNKS (sizeof(chunks) / sizeof(chunks[0]))

static const char ssl_request[8] = {0, 0, 0, 8, 0x04, (char)0xd2, 0x16, 0x2f};
static const char gssenc_request[8] = {0, 0, 0, 8, 0x04, (char)0xd2, 0x16, 0x30};
/* A protocol 3.0 StartupMessage: user=postgres database=postgres. */
static const char startup[] = "\0\0\0\x29\0\x03\0\0user\0postgres\0database\0postgres\0";
#define STARTUP_LEN 41

/* ---- postgres, client ------------------------------------------------------------- */

Test(starttls_pg, client_sends_sslrequest_and_upgrades_on_S)
{
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
		struct run r = drive(&s, "S", 1, chunks[i]);

		cr_assert_eq(r.rc, STLS_TLS, "chunk %zu: rc %d (%s)", chunks[i], r.rc, s.why);
		cr_assert_eq(r.sent_len, 8);
		cr_assert(memcmp(r.sent, ssl_request, 8) == 0);
		cr_assert_eq(s.in_len, 0);
	}
}

Test(starttls_pg, client_fails_closed_on_N)
{
	struct stls s;

	stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
	struct run r = drive(&s, "N", 1, 1);

	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "answered 'N'") != NULL, "%s", s.why);
}

Test(starttls_pg, client_refuses_bytes_injected_after_S)
{
	struct stls s;

	stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
	struct run r = drive(&s, "SE\x1b[31m", 7, 4096);

	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "injection") != NULL, "%s", s.why);
	cr_assert(strstr(s.why, "\"SE\x1b[31m\"") != NULL, "peer text quoted: %s", s.why);
}

Test(starttls_pg, client_quotes_an_error_answer_escaped)
{
	static const char err[] = "E\0\0\0\x10SFATAL\0Mno\n\0";
	struct stls s;

	stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
	struct run r = drive(&s, err, sizeof(err) - 1, 4096);

	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "\"E...\x10SFATAL.Mno\n.\"") != NULL, "NUL shown as '.': %s",
		  s.why);
}

/* ---- postgres, server ------------------------------------------------------------- */

Test(starttls_pg, server_answers_S_and_never_reads_past_the_request)
{
	char peer[64];

	memcpy(peer, ssl_request, 8);
	memcpy(peer + 8, "\x16\x03\x01\x02\x00", 5); /* the ClientHello that follows */
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_SERVER, 0, NULL);
		struct run r = drive(&s, peer, 13, chunks[i]);

		cr_assert_eq(r.rc, STLS_TLS, "chunk %zu: %d %s", chunks[i], r.rc, s.why);
		cr_assert_eq(r.peer_used, 8, "chunk %zu: read %zu bytes", chunks[i], r.peer_used);
		cr_assert_eq(r.sent_len, 1);
		cr_assert_eq(r.sent[0], 'S');
		cr_assert_eq(s.greet_len, 0);
	}
}

Test(starttls_pg, server_answers_N_to_gssenc_then_S)
{
	char peer[16];

	memcpy(peer, gssenc_request, 8);
	memcpy(peer + 8, ssl_request, 8);
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_SERVER, 0, NULL);
		struct run r = drive(&s, peer, 16, chunks[i]);

		cr_assert_eq(r.rc, STLS_TLS, "chunk %zu", chunks[i]);
		cr_assert_eq(r.sent_len, 2);
		cr_assert(memcmp(r.sent, "NS", 2) == 0);
	}
}

Test(starttls_pg, server_refuses_a_cleartext_startup_with_an_error_response)
{
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_SERVER, 0, NULL);
		struct run r = drive(&s, startup, STARTUP_LEN, chunks[i]);

		cr_assert_eq(r.rc, STLS_FAIL, "chunk %zu", chunks[i]);
		cr_assert_eq(r.peer_used, 8);
		cr_assert_eq(r.sent[0], 'E');
		cr_assert(memmem(r.sent, r.sent_len, "requires TLS", 12) != NULL);
		cr_assert(strstr(s.why, "did not ask for TLS") != NULL, "%s", s.why);
	}
}

Test(starttls_pg, server_auto_hands_a_cleartext_startup_to_the_program)
{
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_SERVER, 1, NULL);
		struct run r = drive(&s, startup, STARTUP_LEN, chunks[i]);

		cr_assert_eq(r.rc, STLS_PLAIN, "chunk %zu", chunks[i]);
		cr_assert_eq(r.sent_len, 0);
		cr_assert_eq(s.greet_len, 8);
		cr_assert(memcmp(s.greet, startup, 8) == 0);
	}
}

/* ---- postgres, the program's own first message ------------------------------------- */

Test(starttls_pg, filter_answers_the_programs_sslrequest_with_N)
{
	for (size_t step = 1; step <= 8; step++) {
		struct stls s;
		size_t fwd, at = 0;

		stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
		while (at < 8) {
			size_t k = 8 - at < step ? 8 - at : step;

			cr_assert_eq(stls_pg_filter(&s, ssl_request + at, k, &fwd), k);
			cr_assert_eq(fwd, 0);
			at += k;
		}
		cr_assert_eq(s.greet_len, 1, "step %zu", step);
		cr_assert_eq(s.greet[0], 'N');
		cr_assert(s.pg_filter, "the startup message comes next");
		/* Then the startup message passes, untouched. */
		cr_assert_eq(stls_pg_filter(&s, startup, STARTUP_LEN, &fwd), 3);
		cr_assert_eq(fwd, 3);
		cr_assert(memcmp(s.pbuf, startup, 3) == 0);
		cr_assert(!s.pg_filter);
	}
}

Test(starttls_pg, filter_passes_a_startup_message_at_once)
{
	struct stls s;
	size_t fwd;

	stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
	cr_assert_eq(stls_pg_filter(&s, startup, STARTUP_LEN, &fwd), 3);
	cr_assert_eq(fwd, 3);
	cr_assert(!s.pg_filter);
	cr_assert_eq(s.greet_len, 0);
	/* A prefix held back, then a byte that is no request: all of it goes out. */
	stls_init(&s, POLICY_STARTTLS_POSTGRES, TLS_ROLE_CLIENT, 0, NULL);
	cr_assert_eq(stls_pg_filter(&s, ssl_request, 5, &fwd), 5);
	cr_assert_eq(fwd, 0);
	cr_assert_eq(stls_pg_filter(&s, "X", 1, &fwd), 0);
	cr_assert_eq(fwd, 5);
	cr_assert(!s.pg_filter);
}

/* ---- SMTP, client ----------------------------------------------------------------- */

static const char smtp_ok[] = "220-mx.test ESMTP ready\r\n220 second line\r\n"
			      "250-mx.test\r\n250-PIPELINING\r\n250-starttls\r\n250 8BITMIME\r\n"
			      "220 2.0.0 Ready to start TLS\r\n";

Test(starttls_smtp, client_upgrades_and_keeps_the_greeting_for_the_program)
{
	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, "[127.0.0.1]");
		struct run r = drive(&s, smtp_ok, strlen(smtp_ok), chunks[i]);

		cr_assert_eq(r.rc, STLS_TLS, "chunk %zu: %d %s", chunks[i], r.rc, s.why);
		cr_assert_eq(r.sent_len, strlen("EHLO [127.0.0.1]\r\nSTARTTLS\r\n"));
		cr_assert(memcmp(r.sent, "EHLO [127.0.0.1]\r\nSTARTTLS\r\n", r.sent_len) == 0);
		cr_assert_eq(s.greet_len, strlen("220-mx.test ESMTP ready\r\n220 second line\r\n"));
		cr_assert(memcmp(s.greet, smtp_ok, s.greet_len) == 0);
	}
}

Test(starttls_smtp, client_fails_when_starttls_is_not_offered)
{
	static const char peer[] = "220 mx ESMTP\r\n250-mx\r\n250-STARTTLSX\r\n250 SIZE 10\r\n";

	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, NULL);
		struct run r = drive(&s, peer, strlen(peer), chunks[i]);

		cr_assert_eq(r.rc, STLS_FAIL, "chunk %zu", chunks[i]);
		cr_assert(strstr(s.why, "does not offer STARTTLS") != NULL, "%s", s.why);
		cr_assert(strstr(s.why, "250-mx\r\n250-STARTTLSX") != NULL, "%s", s.why);
		cr_assert(memmem(r.sent, r.sent_len, "STARTTLS", 8) == NULL, "never asked");
	}
}

Test(starttls_smtp, client_fails_on_a_refusal_quoting_it)
{
	static const char peer[] =
	    "220 mx\r\n250-mx\r\n250 STARTTLS\r\n454 4.7.0 TLS not \x07 now\r\n";
	struct stls s;

	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, NULL);
	struct run r = drive(&s, peer, strlen(peer), 1);

	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "refused STARTTLS: \"454 4.7.0 TLS not \x07 now\r\n\"") != NULL,
		  "%s", s.why);
}

Test(starttls_smtp, client_fails_on_a_bad_greeting_and_on_an_injection)
{
	struct stls s;
	struct run r;
	static const char inj[] = "220 mx\r\n250 STARTTLS\r\n220 go\r\nMAIL FROM:<x>\r\n";

	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, NULL);
	r = drive(&s, "554 go away\r\n", 13, 4096);
	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "554 go away") != NULL, "%s", s.why);
	cr_assert_eq(r.sent_len, 0);

	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, NULL);
	r = drive(&s, "HTTP/1.1 400\r\n", 14, 4096);
	cr_assert_eq(r.rc, STLS_FAIL);

	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, NULL);
	r = drive(&s, inj, strlen(inj), 4096);
	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "injection") != NULL, "%s", s.why);
}

Test(starttls_smtp, client_bounds_an_endless_answer)
{
	static char peer[3 * STLS_IN_MAX];
	struct stls s;

	for (size_t i = 0; i + 6 <= sizeof(peer); i += 6)
		memcpy(peer + i, "220-x\n", 6);
	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_CLIENT, 0, NULL);
	struct run r = drive(&s, peer, sizeof(peer), 4096);

	cr_assert_eq(r.rc, STLS_FAIL);
	cr_assert(strstr(s.why, "too long") != NULL, "%s", s.why);
}

/* ---- IMAP, client ----------------------------------------------------------------- */

Test(starttls_imap, client_uses_the_greeting_capabilities_and_strips_them)
{
	static const char peer[] = "* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED] "
				   "Dovecot ready.\r\n"
				   "tlsshim2 OK Begin TLS negotiation now.\r\n";

	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_IMAP, TLS_ROLE_CLIENT, 0, NULL);
		struct run r = drive(&s, peer, strlen(peer), chunks[i]);

		cr_assert_eq(r.rc, STLS_TLS, "chunk %zu: %d %s", chunks[i], r.rc, s.why);
		cr_assert_eq(r.sent_len, strlen("tlsshim2 STARTTLS\r\n"));
		cr_assert(memcmp(r.sent, "tlsshim2 STARTTLS\r\n", r.sent_len) == 0);
		cr_assert_eq(s.greet_len, strlen("* OK Dovecot ready.\r\n"));
		cr_assert(memcmp(s.greet, "* OK Dovecot ready.\r\n", s.greet_len) == 0);
	}
}

Test(starttls_imap, client_asks_capability_when_the_greeting_has_none)
{
	static const char peer[] = "* OK [ALERT] hello\r\n"
				   "* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN\r\n"
				   "tlsshim1 OK done\r\n"
				   "* NOTE untagged noise\r\n"
				   "tlsshim2 OK go\r\n";

	for (size_t i = 0; i < NCHUNKS; i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_IMAP, TLS_ROLE_CLIENT, 0, NULL);
		struct run r = drive(&s, peer, strlen(peer), chunks[i]);

		cr_assert_eq(r.rc, STLS_TLS, "chunk %zu: %d %s", chunks[i], r.rc, s.why);
		cr_assert_eq(r.sent_len, strlen("tlsshim1 CAPABILITY\r\ntlsshim2 STARTTLS\r\n"));
		cr_assert(memcmp(s.greet, "* OK [ALERT] hello\r\n", s.greet_len) == 0);
	}
}

Test(starttls_imap, client_fails_closed_on_refusals)
{
	static const struct {
		const char *peer, *why;
	} cases[] = {
	    {"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n", "pre-authenticated"},
	    {"* BYE busy\r\n", "not OK: \"* BYE busy\r\n\""},
	    {"* OK [CAPABILITY IMAP4rev1] hi\r\n", "does not offer STARTTLS"},
	    {"* OK hi\r\n* CAPABILITY IMAP4rev1\r\ntlsshim1 OK\r\n", "does not offer STARTTLS"},
	    {"* OK [CAPABILITY STARTTLS] hi\r\ntlsshim2 NO \x1b]0;x\x07\r\n",
	     "refused STARTTLS: \"tlsshim2 NO \x1b]0;x\x07\r\n\""},
	    {"* OK [CAPABILITY STARTTLS] hi\r\ntlsshim2 OK\r\n* injected\r\n", "injection"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_IMAP, TLS_ROLE_CLIENT, 0, NULL);
		struct run r = drive(&s, cases[i].peer, strlen(cases[i].peer), 4096);

		cr_assert_eq(r.rc, STLS_FAIL, "case %zu: %d", i, r.rc);
		cr_assert(strstr(s.why, cases[i].why) != NULL, "case %zu: %s", i, s.why);
	}
}

/* ---- SMTP, server ----------------------------------------------------------------- */

/* Feeds the client's bytes; collects what the program would read and what the shim sent. */
static int srv_drive(struct stls *s, const char *client, size_t n, size_t chunk, char *prog,
		     size_t *prog_len, char *sent, size_t *sent_len)
{
	size_t used = 0;
	int rc;

	*prog_len = *sent_len = 0;
	for (int guard = 0; guard < 100000; guard++) {
		rc = stls_smtp_srv_input(s);
		if (rc == STLS_WANT_WRITE) {
			memcpy(sent + *sent_len, s->out, s->out_len);
			*sent_len += s->out_len;
			s->out_len = 0;
			continue;
		}
		/* The program reads what is for it before the next line is looked at. */
		memcpy(prog + *prog_len, s->greet + s->greet_off, s->greet_len - s->greet_off);
		*prog_len += s->greet_len - s->greet_off;
		s->greet_len = s->greet_off = 0;
		if (rc != STLS_WANT_READ)
			return rc;
		if (stls_line(s, 0) > 0)
			continue; /* a whole line is here already: no read needed */
		if (used == n)
			return rc;
		size_t k = n - used < chunk ? n - used : chunk;

		if (k > s->read_max)
			k = s->read_max;
		memcpy(s->in + s->in_len, client + used, k);
		s->in_len += k;
		used += k;
	}
	return -100;
}

Test(starttls_smtp, server_passes_ehlo_refuses_mail_and_answers_starttls)
{
	static const char client[] = "EHLO c.test\r\nMAIL FROM:<a@b>\r\nNOOP\r\nSTARTTLS\r\n";

	for (size_t i = 0; i < NCHUNKS; i++) {
		char prog[512], sent[512];
		size_t pl, sl;
		struct stls s;

		stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_SERVER, 0, NULL);
		int rc = srv_drive(&s, client, strlen(client), chunks[i], prog, &pl, sent, &sl);

		cr_assert_eq(rc, STLS_TLS, "chunk %zu: %d %s", chunks[i], rc, s.why);
		cr_assert_eq(pl, strlen("EHLO c.test\r\nNOOP\r\n"), "chunk %zu", chunks[i]);
		cr_assert(memcmp(prog, "EHLO c.test\r\nNOOP\r\n", pl) == 0,
			  "the program never sees "
			  "MAIL or STARTTLS");
		cr_assert_eq(sl, strlen("530 5.7.0 Must issue a STARTTLS command first\r\n"
					"220 2.0.0 Ready to start TLS\r\n"));
	}
}

Test(starttls_smtp, server_auto_lets_a_cleartext_transaction_through)
{
	static const char client[] = "EHLO c.test\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
	char prog[512], sent[512];
	size_t pl, sl;
	struct stls s;

	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_SERVER, 1, NULL);
	int rc = srv_drive(&s, client, strlen(client), 4096, prog, &pl, sent, &sl);

	cr_assert_eq(rc, STLS_PLAIN);
	cr_assert_eq(sl, 0);
	cr_assert_eq(pl, strlen(client), "all of it, as sent");
	cr_assert(s.srv_done);
}

Test(starttls_smtp, server_refuses_bytes_pipelined_after_starttls)
{
	static const char client[] = "STARTTLS\r\nMAIL FROM:<evil>\r\n";
	char prog[512], sent[512];
	size_t pl, sl;
	struct stls s;

	stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_SERVER, 0, NULL);
	int rc = srv_drive(&s, client, strlen(client), 4096, prog, &pl, sent, &sl);

	cr_assert_eq(rc, STLS_FAIL);
	cr_assert(strstr(s.why, "injection") != NULL, "%s", s.why);
	cr_assert_eq(pl, 0);
}

Test(starttls_smtp, server_adds_starttls_to_the_programs_ehlo_answer)
{
	static const struct {
		const char *answer, *want;
	} cases[] = {
	    {"250-mx.test\r\n250 SIZE 1000\r\n",
	     "250-mx.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n"},
	    {"250 mx.test\r\n", "250-mx.test\r\n250 STARTTLS\r\n"},
	    {"250-mx\r\n250 STARTTLS\r\n", "250-mx\r\n250 STARTTLS\r\n"},
	    {"550 no\r\n", "550 no\r\n"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t step = 1; step <= 64; step *= 4) {
			struct stls s;
			size_t at = 0, n = strlen(cases[i].answer);
			int direct;

			stls_init(&s, POLICY_STARTTLS_SMTP, TLS_ROLE_SERVER, 0, NULL);
			s.srv_ehlo = 1;
			while (at < n) {
				size_t k = n - at < step ? n - at : step;
				size_t t =
				    stls_smtp_srv_output(&s, cases[i].answer + at, k, &direct);

				cr_assert(!direct && t > 0);
				at += t;
			}
			cr_assert_eq(s.out_len, strlen(cases[i].want), "case %zu step %zu", i,
				     step);
			cr_assert(memcmp(s.out, cases[i].want, s.out_len) == 0, "case %zu: %.*s", i,
				  (int)s.out_len, s.out);
			/* After the answer, the program's bytes go to the client as they are. */
			cr_assert_eq(stls_smtp_srv_output(&s, "250 OK\r\n", 8, &direct), 8);
			cr_assert(direct);
		}
	}
}
