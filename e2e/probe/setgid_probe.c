/*
 * The setgid probe of the e2e harness. The harness builds it statically and puts it into an
 * image as root:50000, mode 2755, beside a file of group 50000 with mode 0640. Run by a user
 * outside group 50000, it shows whether executing it granted the group: with
 * noNewPrivileges false the kernel sets the effective gid to 50000 and the file is readable;
 * with noNewPrivileges true the setgid bit is ignored.
 *
 * A C program and not a busybox copy: busybox drops a setgid gain itself (setgid(getgid()))
 * for almost all of its applets, which would hide what the kernel granted.
 *
 * Prints one line: "probe: rgid=<n> egid=<n> read=<ok|denied|error:<errno>>".
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/secret/group-50000";
	char buf[64];
	char result[32];
	int fd = open(path, O_RDONLY | O_NONBLOCK);

	if (fd < 0) {
		int err = errno;

		if (err == EACCES)
			snprintf(result, sizeof result, "denied");
		else
			snprintf(result, sizeof result, "error:%d", err);
	} else {
		ssize_t n = read(fd, buf, sizeof buf);
		int err = errno;

		close(fd);
		if (n < 0)
			snprintf(result, sizeof result, "error:%d", err);
		else
			snprintf(result, sizeof result, "ok");
	}
	printf("probe: rgid=%u egid=%u read=%s\n", (unsigned)getgid(), (unsigned)getegid(),
	       result);
	return 0;
}
