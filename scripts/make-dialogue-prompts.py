#!/usr/bin/env python3
"""Write configs/eval-data/dialogue/prompts.jsonl: the opening turns that `zh-fraction` asks a
chat model, for the share of Chinese tokens in its replies (the paper measures it over the
replies to 500 dialogues).

200 prompts written for this project (Apache-2.0): 25 situations, each in Chinese and in
English, each with 4 ways of asking. None is a turn of the training dialogues in
configs/data/emotional-support.jsonl (checked below). Lines alternate Chinese and English, so
any prefix (`--limit n`) is balanced. Deterministic: rerun to regenerate the same file.

    python3 scripts/make-dialogue-prompts.py
"""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (topic, Chinese situation, English situation): first person, a sentence or two each.
SITUATIONS = [
    ("deadline", "这周有三个项目同时要交，我每天加班到半夜还是做不完。",
     "I have three projects due this week and even working until midnight I can't finish them."),
    ("roommate", "室友总是半夜打游戏很吵，我说过一次他也没改。",
     "My roommate plays loud games every night and nothing changed after I asked him once."),
    ("promotion", "同期进公司的同事都升职了，只有我还在原地。",
     "Everyone who joined the company with me got promoted, and I'm still where I started."),
    ("moving city", "下个月要搬到一个完全陌生的城市，我既期待又害怕。",
     "Next month I'm moving to a city where I know nobody, and I'm excited and scared at once."),
    ("parents aging", "回家发现爸妈老了很多，我却只能一年回去一次。",
     "When I went home I saw how much my parents have aged, and I can only visit once a year."),
    ("public speaking", "下周要在全公司面前做汇报，我一想到就手心出汗。",
     "Next week I have to present to the whole company and my palms sweat just thinking about it."),
    ("ghosted", "聊了两个月的人突然不回我消息了，我不知道哪里做错了。",
     "Someone I'd been talking to for two months suddenly stopped replying and I don't know what I did."),
    ("thesis", "毕业论文写了一半，导师说方向不对要重写。",
     "I'm halfway through my thesis and my advisor says the direction is wrong and I should start over."),
    ("chronic pain", "腰疼了半年，看了好几个医生都没好，我越来越烦躁。",
     "My back has hurt for half a year, several doctors haven't helped, and I'm getting more irritable."),
    ("sibling", "我和姐姐因为照顾妈妈的事情闹翻了，已经一个月没说话。",
     "My sister and I fell out over caring for our mother and haven't spoken for a month."),
    ("career change", "我三十岁了想转行做设计，可家里人都反对。",
     "I'm thirty and want to switch careers to design, but my family is against it."),
    ("friend moved away", "最好的朋友出国了，周末突然不知道该干什么。",
     "My best friend moved abroad and now I don't know what to do with my weekends."),
    ("wedding pressure", "每次过年亲戚都催我结婚，我现在都不想回家了。",
     "Every holiday my relatives push me to get married, and now I don't even want to go home."),
    ("night shifts", "上夜班一年了，作息全乱，和朋友也越来越疏远。",
     "I've worked night shifts for a year; my sleep is a mess and I'm drifting away from friends."),
    ("debt", "信用卡欠了两万块，每个月只够还最低额度。",
     "I owe about three thousand on my credit card and can only pay the minimum each month."),
    ("teen child", "孩子上初中后什么都不愿意跟我说，一说话就关门。",
     "Since my kid started middle school they tell me nothing and shut the door when I try to talk."),
    ("volunteer burnout", "我在社区做志愿者很多年了，最近却觉得很累，又不好意思退出。",
     "I've volunteered in my community for years, lately I'm exhausted, and I feel bad about quitting."),
    ("first job", "刚入职第一个月，很多事情都不会，又怕问多了被嫌弃。",
     "It's my first month at my first job, I don't know how to do much, and I'm afraid to ask too often."),
    ("long distance", "男朋友在另一个城市，我们最近视频总是没话说。",
     "My boyfriend lives in another city and lately our video calls are full of silence."),
    ("weight", "减肥三个月体重一点没变，我快要放弃了。",
     "I've been dieting for three months without losing anything and I'm about to give up."),
    ("old friend", "很久没联系的老同学突然找我借钱，我不知道该不该借。",
     "An old classmate I haven't talked to in years suddenly asked to borrow money and I don't know what to do."),
    ("caregiver", "我一边上班一边照顾生病的爸爸，感觉自己快撑不住了。",
     "I work full time and look after my sick father, and I feel like I can't hold on much longer."),
    ("online criticism", "我在网上发的作品被很多人批评，我难受得一晚上没睡。",
     "Lots of people criticised the work I posted online and I was too upset to sleep all night."),
    ("decision", "两个工作机会摆在面前，一个钱多一个离家近，我纠结了好几天。",
     "I have two job offers, one pays more and one is close to home, and I've been torn for days."),
    ("quiet holidays", "今年春节一个人在宿舍过，看到别人团圆心里空落落的。",
     "I'm spending the holidays alone in my dorm this year and seeing families together leaves me empty."),
]

# Four ways of asking, the situation in place of {s}.
ASKS_ZH = ["{s}我该怎么办？", "{s}你能陪我聊聊吗？", "{s}我现在心里很乱，不知道从哪里说起。", "{s}今天我能先做的一小步是什么？"]
ASKS_EN = ["{s} What should I do?", "{s} Could you talk it through with me?",
           "{s} My head is a mess and I don't know where to start.", "{s} What is one small step I could take today?"]


def main():
    assert len(SITUATIONS) == 25
    rows = []
    for k in range(4):
        for topic, zh, en in SITUATIONS:
            rows.append({"prompt": ASKS_ZH[k].format(s=zh), "lang": "zh", "topic": topic})
            rows.append({"prompt": ASKS_EN[k].format(s=en), "lang": "en", "topic": topic})
    train = set()
    for line in (ROOT / "configs/data/emotional-support.jsonl").read_text(encoding="utf-8").splitlines():
        for m in json.loads(line)["messages"]:
            train.add(m["content"].strip())
    assert not any(r["prompt"] in train for r in rows), "a prompt is a training turn"
    assert len({r["prompt"] for r in rows}) == len(rows) == 200
    out = ROOT / "configs/eval-data/dialogue/prompts.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{out}: {len(rows)} prompts")


if __name__ == "__main__":
    main()
