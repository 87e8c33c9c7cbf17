/*
 * Freestanding test guest for the native KVM backend (package vmm/kvm).
 *
 * The VMM enters _start in 64-bit long mode with the first 4 GiB
 * identity-mapped. The guest finds the virtio console where Linux would:
 * behind the virtio-mmio window that "virtio_mmio.device=SIZE@ADDR:IRQ"
 * on its command line announces, or else on PCI bus 0 (configuration
 * mechanism #1) as a legacy virtio-pci function. It drives it as a
 * minimal multiport driver of either transport (feature MULTIPORT, and
 * VERSION_1 on virtio-mmio; control queues; port 1 brought up and opened
 * once the device names it "ktstr-bulk"), writes an SRDY, a STIM and an
 * SCDX frame to port 1 in the wire format of dispatch/wire, and halts.
 * It polls the used rings and never enables interrupts; each frame
 * costs one VM exit, the queue notify (an OUT on virtio-pci, a 32-bit
 * MMIO store on virtio-mmio).
 * "stim=N" on the command line (boot_params.cmd_line_ptr) makes it send
 * N STIM frames instead of one, each carrying its sequence number;
 * "poweroff" makes it print Linux's power-off line before it halts.
 * "print=N" makes it print N bytes of filler lines on the serial console
 * first (a guest filling the host's console log).
 *
 * Built by the test with:
 *   gcc -m64 -O2 -ffreestanding -fno-pic -no-pie -mgeneral-regs-only
 *       -mno-sse -mno-red-zone -fno-stack-protector -nostdlib -static
 *       -Wl,-Ttext-segment=0x100000 -Wl,--build-id=none -o guest.elf guest.c
 *
 * Under an emulating KVM every instruction costs about a microsecond, so
 * the code is short and does no work it does not need.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

__asm__(".globl _start\n"
	"_start:\n"
	"  lea stack_top(%rip), %rsp\n"
	"  call main\n"
	"1: cli\n"
	"  hlt\n"
	"  jmp 1b\n");

static u8 stack[16384] __attribute__((aligned(16), used));
__asm__(".set stack_top, stack + 16384\n");

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
#define barrier() __asm__ volatile("" : : : "memory")

/* Serial console: the 8250 at 0x3f8. */
#define COM1 0x3f8
static void putch(char c)
{
	while (!(inb(COM1 + 5) & 0x20))
		;
	outb(COM1, (u8)c);
}
static void puts(const char *s) { while (*s) putch(*s++); }
static void puthex(u32 v)
{
	puts("0x");
	for (int i = 28; i >= 0; i -= 4)
		putch("0123456789abcdef"[(v >> i) & 15]);
}
static void halt(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}
static void fail(const char *why)
{
	puts("test guest: FAIL: ");
	puts(why);
	putch('\n');
	halt();
}

/* PCI configuration mechanism #1. */
static u32 pci_read(u32 dev, u32 off)
{
	outl(0xcf8, 0x80000000u | dev << 11 | (off & 0xfc));
	return inl(0xcfc);
}

/* Legacy virtio-pci registers (I/O BAR 0). */
enum {
	VIRTIO_HOST_FEATURES = 0,
	VIRTIO_GUEST_FEATURES = 4,
	VIRTIO_QUEUE_PFN = 8,
	VIRTIO_QUEUE_SIZE = 12,
	VIRTIO_QUEUE_SEL = 14,
	VIRTIO_QUEUE_NOTIFY = 16,
	VIRTIO_STATUS = 18,
	VIRTIO_CONFIG = 20,
};
/* virtio-mmio registers (version 2). */
enum {
	MMIO_MAGIC = 0x000,
	MMIO_VERSION = 0x004,
	MMIO_DEVICE_ID = 0x008,
	MMIO_DEVICE_FEATURES = 0x010,
	MMIO_DEVICE_FEATURES_SEL = 0x014,
	MMIO_DRIVER_FEATURES = 0x020,
	MMIO_DRIVER_FEATURES_SEL = 0x024,
	MMIO_QUEUE_SEL = 0x030,
	MMIO_QUEUE_NUM_MAX = 0x034,
	MMIO_QUEUE_NUM = 0x038,
	MMIO_QUEUE_READY = 0x044,
	MMIO_QUEUE_NOTIFY = 0x050,
	MMIO_STATUS = 0x070,
	MMIO_QUEUE_DESC = 0x080,   /* low word; high at +4 */
	MMIO_QUEUE_DRIVER = 0x090, /* the available ring */
	MMIO_QUEUE_DEVICE = 0x0a0, /* the used ring */
	MMIO_CONFIG = 0x100,
};
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8
#define F_MULTIPORT (1u << 1)
#define F_VERSION_1_HI 1u /* feature bit 32, in the second word */
#define DESC_NEXT 1
#define DESC_WRITE 2
#define AVAIL_NO_INTERRUPT 1

/* Console queues and control events. */
enum { Q_CTRL_RX = 2, Q_CTRL_TX = 3, Q_BULK_TX = 5 };
enum { DEVICE_READY = 0, DEVICE_ADD = 1, PORT_READY = 3, PORT_OPEN = 6, PORT_NAME = 7 };
#define BULK_PORT 1

struct desc { u64 addr; u32 len; u16 flags; u16 next; };
struct vq {
	u16 size;
	u16 last_used;
	volatile struct desc *desc;
	volatile u16 *avail; /* flags, idx, ring[size] */
	volatile u16 *used;  /* flags, idx, then {u32 id, u32 len}[size] */
};

#define QMAX 256
static u8 qmem[3][3 * 4096] __attribute__((aligned(4096)));
static struct vq vqs[6];

/* The transport: the legacy virtio-pci I/O BAR, or the virtio-mmio
 * window (mmio != 0). */
static u16 iobase;
static u64 mmio;

static void mw(u32 off, u32 v) { *(volatile u32 *)(mmio + off) = v; }
static u32 mr(u32 off) { return *(volatile u32 *)(mmio + off); }

static void set_status(u8 v)
{
	if (mmio)
		mw(MMIO_STATUS, v);
	else
		outb(iobase + VIRTIO_STATUS, v);
}

static u32 config32(u32 off) { return mmio ? mr(MMIO_CONFIG + off) : inl(iobase + VIRTIO_CONFIG + off); }

static void notify(int q)
{
	if (mmio)
		mw(MMIO_QUEUE_NOTIFY, (u32)q);
	else
		outw(iobase + VIRTIO_QUEUE_NOTIFY, (u16)q);
}

/* Places queue q in qmem[slot], in the legacy layout either way: the
 * descriptors, the available ring after them, the used ring at the next
 * page. virtio-mmio is told each part's address. */
static void setup_queue(int q, int slot)
{
	struct vq *v = &vqs[q];
	if (mmio) {
		mw(MMIO_QUEUE_SEL, (u32)q);
		if (mr(MMIO_QUEUE_READY))
			fail("queue already ready");
		v->size = (u16)mr(MMIO_QUEUE_NUM_MAX);
	} else {
		outw(iobase + VIRTIO_QUEUE_SEL, (u16)q);
		v->size = inw(iobase + VIRTIO_QUEUE_SIZE);
	}
	if (v->size == 0 || v->size > QMAX)
		fail("queue size");
	u8 *base = qmem[slot];
	v->desc = (volatile struct desc *)base;
	v->avail = (volatile u16 *)(base + 16 * v->size);
	u64 used = (16 * v->size + 6 + 2 * v->size + 4095) & ~4095ull;
	v->used = (volatile u16 *)(base + used);
	v->avail[0] = AVAIL_NO_INTERRUPT;
	if (mmio) {
		u64 parts[3] = { (u64)v->desc, (u64)v->avail, (u64)v->used };
		u32 regs[3] = { MMIO_QUEUE_DESC, MMIO_QUEUE_DRIVER, MMIO_QUEUE_DEVICE };
		mw(MMIO_QUEUE_NUM, v->size);
		for (int i = 0; i < 3; i++) {
			mw(regs[i], (u32)parts[i]);
			mw(regs[i] + 4, (u32)(parts[i] >> 32));
		}
		mw(MMIO_QUEUE_READY, 1);
		if (!mr(MMIO_QUEUE_READY))
			fail("queue not ready");
	} else {
		outl(iobase + VIRTIO_QUEUE_PFN, (u32)((u64)base >> 12));
	}
}

/* Offers the chain starting at head and notifies the device. */
static void offer(int q, u16 head)
{
	struct vq *v = &vqs[q];
	u16 idx = v->avail[1];
	v->avail[2 + idx % v->size] = head;
	barrier();
	v->avail[1] = idx + 1;
	barrier();
	notify(q);
}

/* Waits for the next used entry of q and returns its descriptor id. */
static u32 wait_used(int q, u32 *len)
{
	struct vq *v = &vqs[q];
	while (v->used[1] == v->last_used)
		barrier();
	volatile u32 *e = (volatile u32 *)(v->used + 2) + 2 * (v->last_used % v->size);
	v->last_used++;
	if (len)
		*len = e[1];
	return e[0];
}

/* Sends one buffer (one descriptor) on a transmit queue and waits. */
static void send_buf(int q, const void *p, u32 n)
{
	vqs[q].desc[0] = (struct desc){ (u64)p, n, 0, 0 };
	offer(q, 0);
	wait_used(q, 0);
}

static void send_ctrl(u32 id, u16 event, u16 value)
{
	static struct { u32 id; u16 event, value; } m;
	m.id = id;
	m.event = event;
	m.value = value;
	send_buf(Q_CTRL_TX, &m, sizeof m);
}

/* CRC-32/IEEE, bitwise: the same value as Go's crc32.ChecksumIEEE. */
static u32 crc32(const u8 *p, u32 n)
{
	u32 c = 0xffffffffu;
	while (n--) {
		c ^= *p++;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & -(c & 1));
	}
	return ~c;
}

/* A frame: the 16-byte header of dispatch/wire and its payload, kept in
 * two descriptors of one chain, so one delivery. */
struct frame {
	u32 hdr[4];
	const char *payload;
	u32 len;
};

static void make_frame(struct frame *f, const char tag[4], const char *payload, u32 len)
{
	f->hdr[0] = (u32)(u8)tag[0] << 24 | (u32)(u8)tag[1] << 16 | (u32)(u8)tag[2] << 8 | (u8)tag[3];
	f->hdr[1] = len;
	f->hdr[2] = crc32((const u8 *)payload, len);
	f->hdr[3] = 0;
	f->payload = payload;
	f->len = len;
}

static void send_frame(const struct frame *f)
{
	volatile struct desc *d = vqs[Q_BULK_TX].desc;
	d[0] = (struct desc){ (u64)f->hdr, 16, f->len ? DESC_NEXT : 0, 1 };
	d[1] = (struct desc){ (u64)f->payload, f->len, 0, 0 };
	offer(Q_BULK_TX, 0);
	wait_used(Q_BULK_TX, 0);
}

#define NRX 8
#define RXLEN 64
static u8 rxbuf[NRX][RXLEN];

static int streq(const u8 *a, u32 n, const char *b)
{
	u32 i = 0;
	for (; i < n && b[i]; i++)
		if (a[i] != (u8)b[i])
			return 0;
	return i == n && b[i] == 0;
}

static const char scdx[] = { 0, 0, 0, 0 }; /* exit status 0 */

/* The command line is at boot_params.cmd_line_ptr; the zero page is at
 * the address the VMM passed in rsi, which _start does not keep, so the
 * test guest reads it from the fixed address the VMM uses. */
#define ZERO_PAGE 0x7000
static const char *cmdline(void) { return (const char *)(u64)*(volatile u32 *)(ZERO_PAGE + 0x228); }

/* Returns the text after the first occurrence of key, 0 if none. */
static const char *option(const char *key)
{
	for (const char *p = cmdline(); *p; p++) {
		int i = 0;
		while (key[i] && p[i] == key[i])
			i++;
		if (!key[i])
			return p + i;
	}
	return 0;
}

/* Parses a number as Linux's memparse does: decimal or 0x hex, with an
 * optional K, M or G suffix. */
static u64 number(const char **pp)
{
	const char *p = *pp;
	u64 n = 0;
	if (p[0] == '0' && p[1] == 'x') {
		for (p += 2;; p++) {
			u32 d = *p >= '0' && *p <= '9' ? (u32)(*p - '0') : *p >= 'a' && *p <= 'f' ? (u32)(*p - 'a' + 10) : 16;
			if (d == 16)
				break;
			n = n << 4 | d;
		}
	} else {
		for (; *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (u32)(*p - '0');
	}
	if (*p == 'K')
		n <<= 10, p++;
	else if (*p == 'M')
		n <<= 20, p++;
	else if (*p == 'G')
		n <<= 30, p++;
	*pp = p;
	return n;
}

static u32 stim_count(void)
{
	const char *p = option("stim=");
	if (!p)
		return 1;
	return (u32)number(&p);
}

/* Finds the legacy virtio-pci console on PCI bus 0 and resets it. */
static void find_pci(void)
{
	u32 dev = 32;
	for (u32 d = 0; d < 32; d++) {
		if (pci_read(d, 0) == 0x10031af4u && pci_read(d, 0x2c) >> 16 == 3) {
			dev = d;
			break;
		}
	}
	if (dev == 32)
		fail("no virtio console on PCI bus 0");
	u32 bar = pci_read(dev, 0x10);
	if (!(bar & 1))
		fail("BAR0 is not an I/O BAR");
	iobase = (u16)(bar & ~3u);
	puts("test guest: virtio console at PCI slot ");
	puthex(dev);
	puts(" io ");
	puthex(iobase);
	putch('\n');

	outb(iobase + VIRTIO_STATUS, 0);
	outb(iobase + VIRTIO_STATUS, S_ACK | S_DRIVER);
	if (!(inl(iobase + VIRTIO_HOST_FEATURES) & F_MULTIPORT))
		fail("device lacks MULTIPORT");
	outl(iobase + VIRTIO_GUEST_FEATURES, F_MULTIPORT);
}

/* Checks the virtio-mmio window the command line announced and
 * negotiates MULTIPORT and VERSION_1 up to FEATURES_OK. */
static void find_mmio(const char *p)
{
	number(&p); /* the window's size */
	if (*p++ != '@')
		fail("virtio_mmio.device= without @ADDR");
	mmio = number(&p);
	puts("test guest: virtio console at mmio ");
	puthex((u32)mmio);
	putch('\n');
	if (mr(MMIO_MAGIC) != 0x74726976u || mr(MMIO_VERSION) != 2 || mr(MMIO_DEVICE_ID) != 3)
		fail("no virtio-mmio version 2 console there");
	mw(MMIO_STATUS, 0);
	mw(MMIO_STATUS, S_ACK);
	mw(MMIO_STATUS, S_ACK | S_DRIVER);
	mw(MMIO_DEVICE_FEATURES_SEL, 0);
	if (!(mr(MMIO_DEVICE_FEATURES) & F_MULTIPORT))
		fail("device lacks MULTIPORT");
	mw(MMIO_DEVICE_FEATURES_SEL, 1);
	if (!(mr(MMIO_DEVICE_FEATURES) & F_VERSION_1_HI))
		fail("device lacks VERSION_1");
	mw(MMIO_DRIVER_FEATURES_SEL, 0);
	mw(MMIO_DRIVER_FEATURES, F_MULTIPORT);
	mw(MMIO_DRIVER_FEATURES_SEL, 1);
	mw(MMIO_DRIVER_FEATURES, F_VERSION_1_HI);
	mw(MMIO_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(mr(MMIO_STATUS) & S_FEATURES_OK))
		fail("device refused the features");
}

void main(void)
{
	puts("test guest: up\n");
	const char *pr = option("print=");
	if (pr) {
		u32 left = (u32)number(&pr);
		static const char line[] = "test guest: filler filler filler filler filler filler filler.\n";
		for (u32 i = 0; i < left; i++)
			putch(line[i % (sizeof line - 1)]);
	}
	const char *mm = option("virtio_mmio.device=");
	if (mm)
		find_mmio(mm);
	else
		find_pci();
	if (config32(4) < 2)
		fail("fewer than 2 ports");
	setup_queue(Q_CTRL_RX, 0);
	setup_queue(Q_CTRL_TX, 1);
	setup_queue(Q_BULK_TX, 2);
	set_status(mmio ? S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK : S_ACK | S_DRIVER | S_DRIVER_OK);

	struct vq *rx = &vqs[Q_CTRL_RX];
	for (u16 i = 0; i < NRX; i++) {
		rx->desc[i] = (struct desc){ (u64)rxbuf[i], RXLEN, DESC_WRITE, 0 };
		rx->avail[2 + i] = i;
	}
	barrier();
	rx->avail[1] = NRX;
	notify(Q_CTRL_RX);

	send_ctrl(0xffffffffu, DEVICE_READY, 1);
	int named = 0, host_open = 0;
	while (!named || !host_open) {
		u32 len;
		u32 id = wait_used(Q_CTRL_RX, &len);
		if (id >= NRX || len < 8)
			fail("bad control message");
		u8 *m = rxbuf[id];
		u32 port = *(u32 *)m;
		u16 event = *(u16 *)(m + 4), value = *(u16 *)(m + 6);
		if (port == BULK_PORT) {
			if (event == DEVICE_ADD)
				send_ctrl(BULK_PORT, PORT_READY, 1);
			else if (event == PORT_NAME && streq(m + 8, len - 8, "ktstr-bulk"))
				named = 1;
			else if (event == PORT_OPEN)
				host_open = value == 1;
		}
		offer(Q_CTRL_RX, (u16)id);
	}
	send_ctrl(BULK_PORT, PORT_OPEN, 1);
	puts("test guest: port 1 is ktstr-bulk, sending frames\n");

	/* Frames are built just before they are sent; each STIM payload
	 * holds its sequence number in decimal. */
	u32 n = stim_count();
	static struct frame f;
	static char payload[16] = "stim ";
	make_frame(&f, "SRDY", 0, 0);
	send_frame(&f);
	for (u32 i = 0; i < n; i++) {
		u32 v = i, len = 5;
		char digits[10];
		int k = 0;
		do {
			digits[k++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		while (k)
			payload[len++] = digits[--k];
		make_frame(&f, "STIM", payload, len);
		send_frame(&f);
	}
	make_frame(&f, "SCDX", scdx, sizeof scdx);
	send_frame(&f);
	puts("test guest: done\n");
	if (option("poweroff"))
		puts("reboot: Power down\n"); /* what Linux prints before it halts */
	halt();
}
