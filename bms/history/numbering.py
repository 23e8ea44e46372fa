"""Data-migration helper: give rows written before history stamping a stamp, oldest first."""


def number_existing(apps, app_label: str, model_name: str, order: str) -> None:
    model = apps.get_model(app_label, model_name)
    counter_model = apps.get_model("history", "OriginCounter")
    for origin in model.objects.values_list("origin", flat=True).distinct():
        counter, _ = counter_model.objects.get_or_create(origin=origin)
        for pk in model.objects.filter(origin=origin).order_by(order, "pk").values_list("pk", flat=True):
            counter.value += 1
            model.objects.filter(pk=pk).update(origin_seq=counter.value)
        counter.save()
