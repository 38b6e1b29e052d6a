/*-------------------------------------------------------------------------
 *
 * notify_latency.c
 *	  Commit-to-listener latency of recall notifications (make bench).
 *
 * LISTENs on a channel for a given time and, for every single-message
 * payload ({"op":"recall",...,"at":"<recalled_at>"}), records the time of
 * receipt minus the event's recalled_at (the recall transaction's start,
 * so the figure includes that short transaction).  Prints the count, p50
 * and p99 in milliseconds.
 *
 * usage: notify_latency CONNINFO CHANNEL SECONDS
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>

#include "libpq-fe.h"

/* Microseconds since the epoch now. */
static double
now_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec * 1e6 + tv.tv_usec;
}

/* Parse "YYYY-MM-DDTHH:MM:SS[.ffffff]+HH:MM" into microseconds since the epoch. */
static int
parse_iso(const char *s, double *us)
{
	struct tm	tm;
	int			year, mon, day, hour, min, sec, n = 0;
	double		frac = 0;
	int			oh = 0, om = 0;
	char		sign = '+';
	const char *p;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &hour, &min, &sec, &n) != 6)
		return -1;
	p = s + n;
	if (*p == '.')
	{
		double		scale = 0.1;

		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	if (*p == '+' || *p == '-')
	{
		sign = *p;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1)
			return -1;
	}
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	*us = (double) timegm(&tm) * 1e6 + frac * 1e6;
	*us -= (sign == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0) * 1e6;
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	char	   *listen;
	double		end;
	double	   *samples = NULL;
	size_t		n = 0;
	size_t		cap = 0;

	if (argc != 4)
	{
		fprintf(stderr, "usage: %s CONNINFO CHANNEL SECONDS\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s: %s", argv[0], PQerrorMessage(conn));
		return 1;
	}
	listen = malloc(strlen(argv[2]) * 2 + 32);
	snprintf(listen, strlen(argv[2]) * 2 + 32, "LISTEN \"%s\"", argv[2]);
	res = PQexec(conn, listen);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s: %s", argv[0], PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);

	end = now_us() + atof(argv[3]) * 1e6;
	while (now_us() < end)
	{
		int			sock = PQsocket(conn);
		fd_set		input;
		struct timeval timeout = {0, 100000};
		PGnotify   *notify;

		FD_ZERO(&input);
		FD_SET(sock, &input);
		if (select(sock + 1, &input, NULL, NULL, &timeout) < 0)
		{
			if (errno == EINTR)
				continue;
			perror("select");
			return 1;
		}
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "%s: %s", argv[0], PQerrorMessage(conn));
			return 1;
		}
		while ((notify = PQnotifies(conn)) != NULL)
		{
			double		received = now_us();
			const char *at = strstr(notify->extra, "\"at\":\"");
			double		sent;

			if (at && strstr(notify->extra, "\"op\":\"recall\"") &&
				parse_iso(at + 6, &sent) == 0)
			{
				if (n == cap)
				{
					cap = cap ? cap * 2 : 4096;
					samples = realloc(samples, cap * sizeof(double));
				}
				samples[n++] = (received - sent) / 1000.0;
			}
			PQfreemem(notify);
		}
	}
	PQfinish(conn);

	if (n == 0)
	{
		printf("0 notifications\n");
		return 1;
	}
	qsort(samples, n, sizeof(double), cmp_double);
	printf("%zu notifications, p50 %.2f ms, p99 %.2f ms\n",
		   n, samples[n / 2], samples[(size_t) (n * 0.99) < n ? (size_t) (n * 0.99) : n - 1]);
	return 0;
}
