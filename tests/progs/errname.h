/*
 * errname.h - the symbolic name of an errno value ("ECONNREFUSED"), for the
 * helper programs' error messages, which the end-to-end tests match.
 */
#ifndef TLSSHIM_PROGS_ERRNAME_H
#define TLSSHIM_PROGS_ERRNAME_H

#include <errno.h>

static inline const char *errname(int e)
{
	switch (e) {
	case ECONNREFUSED:
		return "ECONNREFUSED";
	case ECONNRESET:
		return "ECONNRESET";
	case ECONNABORTED:
		return "ECONNABORTED";
	case EACCES:
		return "EACCES";
	case EPERM:
		return "EPERM";
	case EPIPE:
		return "EPIPE";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case EINPROGRESS:
		return "EINPROGRESS";
	case EAGAIN:
		return "EAGAIN";
	case EINTR:
		return "EINTR";
	case EBADF:
		return "EBADF";
	case EINVAL:
		return "EINVAL";
	case ENOTCONN:
		return "ENOTCONN";
	case EHOSTUNREACH:
		return "EHOSTUNREACH";
	case ENETUNREACH:
		return "ENETUNREACH";
	case EADDRNOTAVAIL:
		return "EADDRNOTAVAIL";
	case EPROTO:
		return "EPROTO";
	case EIO:
		return "EIO";
	case ENOMEM:
		return "ENOMEM";
	case ENOENT:
		return "ENOENT";
	case EFAULT:
		return "EFAULT";
	case EAFNOSUPPORT:
		return "EAFNOSUPPORT";
	case EISCONN:
		return "EISCONN";
	default:
		return "E?";
	}
}

#endif
